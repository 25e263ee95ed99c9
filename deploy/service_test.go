// base/service.yaml, the headless metrics Service, against the DaemonSet of
// base/daemonset.yaml (its pods' labels and metrics port) and the port of the
// binary's GENLBRIDGE_HTTP_ADDR setting.

package deploy_test

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestService(t *testing.T) {
	env := literalEnv(t, bridgeContainer(t, baseDaemonSet(t)))
	port := httpPort(t, env)
	objs, err := decodeStrict(read(t, "base/service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	svc := objs[0].(*corev1.Service)
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service: want headless (clusterIP: None)")
	}
	if len(svc.Spec.Ports) != 1 || int(svc.Spec.Ports[0].Port) != port || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("service ports %+v, want %d -> metrics", svc.Spec.Ports, port)
	}
	if a := svc.Annotations["prometheus.io/port"]; a != strconv.Itoa(port) {
		t.Errorf("service annotation prometheus.io/port %q, want %d", a, port)
	}
	ds := baseDaemonSet(t)
	for k, v := range svc.Spec.Selector {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("service selector %s=%s does not select the DaemonSet's pods", k, v)
		}
	}
}
