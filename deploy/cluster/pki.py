"""The cluster's certificates and the admin kubeconfig, made with openssl at k8s-up.

One throwaway CA signs the API server's serving certificate and one client certificate in
``system:masters`` that the control plane, the kubelet and kube-proxy all use: a single-node
test cluster has no other tenant to keep apart. Service-account tokens are signed with their
own RSA key.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from deploy.cluster.layout import (
    API_PORT,
    API_SERVICE_IP,
    CLUSTER_DOMAIN,
    KUBECONFIG,
    NODE_IP,
    PKI,
)

DAYS = "30"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _sign(name: str, subject: str, extensions: str) -> None:
    key, csr, ext = PKI / f"{name}.key", PKI / f"{name}.csr", PKI / f"{name}.ext"
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(PKI / "ca.crt"), "-CAkey", str(PKI / "ca.key"),
        "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", str(ext),
        "-out", str(PKI / f"{name}.crt"),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


def create() -> None:
    """Writes pki/ (CA, API server, admin, service-account keys) and admin.kubeconfig."""
    PKI.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(PKI / "ca.key"),
        "-out", str(PKI / "ca.crt"), "-days", DAYS, "-subj", "/CN=servoscope-k8s-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    names.append(f"kubernetes.default.svc.{CLUSTER_DOMAIN}")
    # 127.0.0.1: clients on the host reach the API server through a loopback port-forward
    # (release.api_access).
    addresses = [API_SERVICE_IP, NODE_IP, "127.0.0.1"]
    alt = ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for a in addresses])
    _sign("apiserver", "/CN=kube-apiserver", f"subjectAltName={alt}\nextendedKeyUsage=serverAuth\n")
    _sign("admin", "/CN=servoscope-admin/O=system:masters", "extendedKeyUsage=clientAuth\n")
    _openssl("genrsa", "-out", str(PKI / "sa.key"), "2048")
    _openssl("rsa", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))
    write_kubeconfig(KUBECONFIG, f"https://{NODE_IP}:{API_PORT}")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str) -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: servoscope
  cluster:
    server: {server}
    certificate-authority-data: {_b64(PKI / "ca.crt")}
users:
- name: admin
  user:
    client-certificate-data: {_b64(PKI / "admin.crt")}
    client-key-data: {_b64(PKI / "admin.key")}
contexts:
- name: servoscope
  context: {{cluster: servoscope, user: admin}}
current-context: servoscope
"""
    )
    path.chmod(0o600)
