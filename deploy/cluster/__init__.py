"""A real single-node Kubernetes, built from source, sealed in a network namespace of its own.

``make k8s-up`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
the kubelet and kube-proxy (binaries from ``tools/kubernetes.sh``) with CoreDNS as a pod, and
returns when the node is Ready and cluster DNS answers; ``make k8s-down`` stops every process by
its PID and removes everything ``k8s-up`` created. Every process of the node runs inside the
network namespace ``servoscope-k8s``, which holds only loopback, the node's address on an
interface of its own and the pod bridge, with no route out of the machine: pods cannot reach
anything outside it, by construction. Clients enter it with ``ip netns exec`` or through
``deploy.cluster.forward``, a port-forward to the host's loopback.
"""
