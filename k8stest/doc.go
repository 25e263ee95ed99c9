// Package k8stest runs the DaemonSet of deploy/ on a real one-node
// Kubernetes cluster on this machine (internal/k8scluster), with the image
// the root Dockerfile builds, and checks what the issue of the DaemonSet
// on a real kubelet asks: the rollout, the pod's security context as the
// kernel sees it, kernel events stamped with the node's name, rollouts and
// pod deletions while events flow, the spool on its hostPath, SIGTERM, the
// probes, the example without NET_ADMIN, and the per-node identity of the
// auth callout (deploy/nats/callout) with the API server's own tokens.
//
// The tests have the build tag k8s and need root, the binaries of make
// k8s-bins and the image of make image: run them with make k8s-test. The
// directory kube/ is the module those binaries are built from.
package k8stest
