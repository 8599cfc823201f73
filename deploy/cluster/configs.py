"""The node's configuration files: containerd, CNI, kubelet, kube-proxy, and CoreDNS's objects."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.cluster.layout import (
    BRIDGE,
    CGROUP_ROOT,
    CLUSTER_DOMAIN,
    CNI_BIN_DIR,
    CONTAINERD_SOCKET,
    DNS_SERVICE_IP,
    KUBECONFIG,
    NODE_IP,
    PKI,
    POD_CIDR,
    STATE_DIR,
)

CNI_CONF_DIR = STATE_DIR / "cni" / "net.d"


def containerd_config(pause: str, runc: str) -> str:
    root = STATE_DIR / "containerd"
    return f"""version = 3
root = "{root / "root"}"
state = "{root / "state"}"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[ttrpc]
  address = "{root / "containerd.sock.ttrpc"}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause}"

[plugins.'io.containerd.cri.v1.runtime']
  # runc would give pod sandboxes an OOM score needing CAP_SYS_RESOURCE, which this kind of
  # machine does not grant: leave the score as the kubelet's own.
  restrict_oom_score_adj = true
  # Pods' network namespaces are pinned under containerd's state dir, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{CNI_CONF_DIR}"
"""


def cni_conflist() -> str:
    """The pod network: one bridge, host-local addresses, and no IP masquerade at all."""
    gateway = POD_CIDR.rsplit(".", 1)[0] + ".1"
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "servoscope",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    # ipMasq stays off: a pod's packet for an address outside the namespace has
                    # no route and is dropped here, never rewritten and sent on.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": gateway}]],
                        # Pods route everything to the namespace, which has no route out.
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(STATE_DIR / "cni" / "ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        },
        indent=2,
    )


def kubelet_config() -> str:
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {PKI / "ca.crt"}}}
authorization: {{mode: Webhook}}
# This machine kind has hybrid cgroups (v1 controllers) and no systemd as init.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: {CGROUP_ROOT}
containerRuntimeEndpoint: unix://{CONTAINERD_SOCKET}
clusterDNS: [{DNS_SERVICE_IP}]
clusterDomain: {CLUSTER_DOMAIN}
# No upstream resolver for pods: names outside the cluster do not resolve.
resolvConf: ""
podLogsDir: {STATE_DIR / "pod-logs"}
failSwapOn: false
# A shared CI machine's disk and memory are not this node's to police; images must never be
# garbage-collected either (no registry can give them back).
evictionHard: {{memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
"""


def kube_proxy_config() -> str:
    return f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {{kubeconfig: {KUBECONFIG}}}
hostnameOverride: servoscope-node
clusterCIDR: {POD_CIDR}
bindAddress: {NODE_IP}
healthzBindAddress: {NODE_IP}:10256
metricsBindAddress: 127.0.0.1:10249
# conntrack sizes are kernel-wide settings: leave them as the host has them.
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"""


def coredns_manifest(image: str) -> str:
    """CoreDNS as a restricted pod serving cluster.local only: it forwards nothing outside."""
    corefile = (
        ".:5353 {\n    errors\n    health :8080\n    ready :8181\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        "        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }\n"
        "    prometheus :9153\n    cache 30\n    loadbalance\n}\n"
    )
    indented = "".join(f"    {line}\n" for line in corefile.splitlines())
    return f"""apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  Corefile: |
{indented}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: coredns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-dns}}}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: coredns
        image: {image}
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {{name: dns, containerPort: 5353, protocol: UDP}}
        - {{name: dns-tcp, containerPort: 5353, protocol: TCP}}
        - {{name: metrics, containerPort: 9153, protocol: TCP}}
        readinessProbe: {{httpGet: {{path: /ready, port: 8181}}, periodSeconds: 2}}
        livenessProbe: {{httpGet: {{path: /health, port: 8080}}, periodSeconds: 10}}
        resources:
          requests: {{cpu: 50m, memory: 40Mi}}
          limits: {{memory: 120Mi}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {{drop: [ALL]}}
        volumeMounts: [{{name: config, mountPath: /etc/coredns, readOnly: true}}]
      volumes: [{{name: config, configMap: {{name: coredns}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: kube-dns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  clusterIP: {DNS_SERVICE_IP}
  selector: {{k8s-app: kube-dns}}
  ports:
  - {{name: dns, port: 53, targetPort: 5353, protocol: UDP}}
  - {{name: dns-tcp, port: 53, targetPort: 5353, protocol: TCP}}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


VOLUMES = STATE_DIR / "volumes"
VOLUME_COUNT = 4
VOLUME_SIZE = "2Gi"


def volumes_manifest() -> str:
    """Node-local PersistentVolumes for claims without a StorageClass (the node has no
    provisioner): directories under the state dir, removed by k8s-down with the rest."""
    documents = []
    for index in range(VOLUME_COUNT):
        directory = VOLUMES / f"pv{index}"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o1777)  # any pod user may write; no fsGroup on hostPath volumes
        documents.append(
            f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: servoscope-node-pv{index}}}
spec:
  capacity: {{storage: {VOLUME_SIZE}}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {{path: {directory}, type: Directory}}
"""
        )
    return "---\n".join(documents)
