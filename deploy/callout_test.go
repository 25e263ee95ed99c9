// The auth callout responder's side, nats/callout/ (its Deployment,
// ServiceAccount and ClusterRoleBinding): the variables it sets are the
// responder's (cmd/genlbridge/callout.go) or the binary's settings; it
// admits the DaemonSet's token (its audience, its service account); it
// computes a node's permissions from the DaemonSet's own settings (stream,
// subjects); its keys are files of a read-only Secret mount; it may read
// the API server's OIDC discovery and have it review tokens; responders
// share the requests.

package deploy_test

import (
	"github.com/genlbridge/genlbridge/callout"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// calloutEnv is the set of variables `genlbridge callout` reads for its
// flags: the names its source passes to envOr.
func calloutEnv(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("../cmd/genlbridge/callout.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`envOr\("(GENLBRIDGE_CALLOUT_[A-Z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
		names[m[1]] = true
	}
	if len(names) < 5 {
		t.Fatalf("cmd/genlbridge/callout.go: found only %v", names)
	}
	return names
}

func TestCalloutDeployment(t *testing.T) {
	objs := kustomizeBuild(t, "nats/callout")
	var dep *appsv1.Deployment
	var sa *corev1.ServiceAccount
	crbs := map[string]*rbacv1.ClusterRoleBinding{} // by role
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			dep = o
		case *corev1.ServiceAccount:
			sa = o
		case *rbacv1.ClusterRoleBinding:
			crbs[o.RoleRef.Name] = o
		default:
			t.Errorf("nats/callout: unexpected %T", o)
		}
	}
	if dep == nil || sa == nil || len(crbs) != 2 {
		t.Fatalf("nats/callout: want a Deployment, a ServiceAccount and two ClusterRoleBindings; have %d objects", len(objs))
	}
	if dep.Namespace != "nats" || sa.Namespace != "nats" {
		t.Errorf("the responder is in namespace %q (its account %q), want nats, beside the server", dep.Namespace, sa.Namespace)
	}
	spec := &dep.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := &spec.Containers[0]
	if !slices.Equal(c.Args, []string{"callout"}) || !strings.Contains(c.Image, "genlbridge:") {
		t.Errorf("the container runs %s %v, want the genlbridge image's callout", c.Image, c.Args)
	}

	// Its variables: the responder's own or the binary's settings.
	known, own := vars(t), calloutEnv(t)
	env := map[string]string{}
	for _, e := range c.Env {
		if _, ok := known[e.Name]; !ok && !own[e.Name] {
			t.Errorf("env %s is neither a variable of genlbridge callout nor a setting", e.Name)
		}
		env[e.Name] = e.Value
	}

	// It admits the DaemonSet's token: its audience, its service account.
	ds := builtDaemonSet(t, "base", kustomizeBuild(t, "base"))
	dsEnv := literalEnv(t, bridgeContainer(t, ds))
	src, _, ok := projectedToken(&ds.Spec.Template.Spec, bridgeContainer(t, ds), dsEnv["GENLBRIDGE_NATS_TOKEN_FILE"])
	if !ok {
		t.Fatal("the DaemonSet has no projected NATS token")
	}
	if env["GENLBRIDGE_CALLOUT_AUDIENCE"] != src.Audience || src.Audience != calloutAudience {
		t.Errorf("GENLBRIDGE_CALLOUT_AUDIENCE %q, the DaemonSet's token is for %q", env["GENLBRIDGE_CALLOUT_AUDIENCE"], src.Audience)
	}
	if want := ds.Namespace + "/" + ds.Spec.Template.Spec.ServiceAccountName; env["GENLBRIDGE_CALLOUT_SERVICE_ACCOUNTS"] != want {
		t.Errorf("GENLBRIDGE_CALLOUT_SERVICE_ACCOUNTS %q, want the DaemonSet's service account alone, %s", env["GENLBRIDGE_CALLOUT_SERVICE_ACCOUNTS"], want)
	}
	// The same server, and the permissions of the bridges' own settings.
	if env["GENLBRIDGE_NATS_URL"] != dsEnv["GENLBRIDGE_NATS_URL"] {
		t.Errorf("GENLBRIDGE_NATS_URL %q, the bridges' is %q", env["GENLBRIDGE_NATS_URL"], dsEnv["GENLBRIDGE_NATS_URL"])
	}
	for _, name := range []string{"GENLBRIDGE_STREAM", "GENLBRIDGE_SUBJECT", "GENLBRIDGE_LOSS_SUBJECT"} {
		if got, want := effective(t, env, name), effective(t, dsEnv, name); got != want {
			t.Errorf("%s: the responder's %q, the bridges' %q: it would grant other subjects than they use", name, got, want)
		}
	}

	// Its keys: files of one read-only Secret mount, never in the manifest.
	secrets := map[string]bool{}
	var secretName string
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secrets[v.Name], secretName = true, v.Secret.SecretName
		}
	}
	for _, name := range []string{"GENLBRIDGE_NATS_CREDS", "GENLBRIDGE_CALLOUT_ISSUER_KEY", "GENLBRIDGE_CALLOUT_ACCOUNT_KEY"} {
		if env[name] == "" || !inSecretMount(c, secrets, env[name]) {
			t.Errorf("%s = %q is not a file of a read-only Secret mount", name, env[name])
		}
	}
	for _, e := range c.Env {
		if e.Name == "GENLBRIDGE_CALLOUT_ACCOUNT" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != secretName) {
			t.Errorf("GENLBRIDGE_CALLOUT_ACCOUNT: want it from the Secret %s the operator makes", secretName)
		}
	}

	// It reads the issuer's discovery with its own API token.
	if spec.ServiceAccountName != sa.Name || spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
		t.Errorf("the pod runs as %q (automount %v), want %s with its API token", spec.ServiceAccountName, spec.AutomountServiceAccountToken, sa.Name)
	}
	// and creates tokenreviews (system:auth-delegator), at the API server
	// in the cluster.
	for _, role := range []string{"system:service-account-issuer-discovery", "system:auth-delegator"} {
		crb := crbs[role]
		if crb == nil || crb.RoleRef.Kind != "ClusterRole" || len(crb.Subjects) != 1 ||
			crb.Subjects[0].Kind != "ServiceAccount" || crb.Subjects[0].Name != sa.Name || crb.Subjects[0].Namespace != sa.Namespace {
			t.Errorf("the ClusterRoleBinding of %s: %+v, want it bound to %s/%s alone", role, crb, sa.Namespace, sa.Name)
		}
	}
	if got, want := env["GENLBRIDGE_CALLOUT_TOKEN_REVIEW_URL"], "https://kubernetes.default.svc/apis/authentication.k8s.io/v1/tokenreviews"; got != want {
		t.Errorf("GENLBRIDGE_CALLOUT_TOKEN_REVIEW_URL %q, want the API server's in the cluster, %s", got, want)
	}

	// Responders share the requests (a queue group), so more than one
	// runs and a rollout keeps one; unprivileged.
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 || dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("replicas %v, strategy %q: want at least 2, RollingUpdate (responders answer in queue group %s)", dep.Spec.Replicas, dep.Spec.Strategy.Type, callout.QueueGroup)
	}
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("want a non-root user")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("want a read-only root, no privilege escalation, every capability dropped: %+v", sc)
	}
	for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		if rl.Cpu().IsZero() || rl.Memory().IsZero() {
			t.Errorf("want CPU and memory requests and limits")
		}
	}
}
