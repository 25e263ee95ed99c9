// The NATS side: nats/values.yaml (values for the NATS Helm chart) against
// the stream and the DaemonSet's GENLBRIDGE_NATS_URL; nats/stream-genl.json
// against nats-server's StreamConfig (decoded strictly), the subjects the
// binary's templates make (sink.ParseTemplate), the DaemonSet's
// GENLBRIDGE_STREAM_* settings, and an embedded JetStream server (broker).

package deploy_test

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/broker"
	"github.com/genlbridge/genlbridge/config"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

func TestNATSValues(t *testing.T) {
	var v struct {
		FullnameOverride string `json:"fullnameOverride"`
		Config           struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled   bool `json:"enabled"`
				FileStore struct {
					Enabled bool   `json:"enabled"`
					MaxSize string `json:"maxSize"`
					PVC     struct {
						Enabled bool   `json:"enabled"`
						Size    string `json:"size"`
					} `json:"pvc"`
				} `json:"fileStore"`
			} `json:"jetstream"`
		} `json:"config"`
	}
	if err := yaml.Unmarshal(read(t, "nats/values.yaml"), &v); err != nil {
		t.Fatal(err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("want a 3-server cluster, have enabled=%v replicas=%d", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled {
		t.Errorf("want JetStream with a file store on a PVC: %+v", c.JetStream)
	}
	st := streamFile(t)
	if st.Replicas > c.Cluster.Replicas {
		t.Errorf("stream replicas %d > cluster servers %d", st.Replicas, c.Cluster.Replicas)
	}
	maxSize, err1 := resource.ParseQuantity(c.JetStream.FileStore.MaxSize)
	pvc, err2 := resource.ParseQuantity(c.JetStream.FileStore.PVC.Size)
	if err1 != nil || err2 != nil {
		t.Fatalf("fileStore sizes: %v %v", err1, err2)
	}
	if maxSize.Value() < st.MaxBytes || pvc.Cmp(maxSize) < 0 {
		t.Errorf("want stream max_bytes (%d) <= fileStore.maxSize (%s) <= pvc.size (%s)", st.MaxBytes, &maxSize, &pvc)
	}
	// The bridges reach the chart's service.
	env := literalEnv(t, bridgeContainer(t, baseDaemonSet(t)))
	if u := env["GENLBRIDGE_NATS_URL"]; !strings.HasPrefix(u, "nats://"+v.FullnameOverride+".nats.svc") {
		t.Errorf("GENLBRIDGE_NATS_URL %q is not the chart's service %s.nats.svc", u, v.FullnameOverride)
	}
}

func streamFile(t *testing.T) *server.StreamConfig {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(read(t, "nats/stream-genl.json")))
	dec.DisallowUnknownFields()
	var sc server.StreamConfig
	if err := dec.Decode(&sc); err != nil {
		t.Fatalf("nats/stream-genl.json: %v", err)
	}
	return &sc
}

func TestStream(t *testing.T) {
	st := streamFile(t)
	ds := baseDaemonSet(t)
	env := literalEnv(t, bridgeContainer(t, ds))
	if effective(t, env, "GENLBRIDGE_SINK") != "jetstream" {
		t.Errorf("the DaemonSet does not use the jetstream sink")
	}
	if st.Storage != server.FileStorage || st.Replicas != 3 || st.MaxAge <= 0 || st.Duplicates <= 0 {
		t.Errorf("want file storage, 3 replicas, a max age and a duplicate window: %+v", st)
	}
	// The subjects capture every subject the bridge makes.
	for _, name := range []string{"GENLBRIDGE_SUBJECT", "GENLBRIDGE_LOSS_SUBJECT"} {
		tmpl, err := sink.ParseTemplate(effective(t, env, name))
		if err != nil {
			t.Fatal(err)
		}
		probe := tmpl.Subject("CONTROL_EXMPL", "EXMPL_GRP", "node-1", "do")
		ok := false
		for _, f := range st.Subjects {
			ok = ok || server.SubjectMatchesFilter(probe, f)
		}
		if !ok {
			t.Errorf("stream subjects %v do not capture %s (%s)", st.Subjects, probe, name)
		}
	}
	// The duplicate window covers a republish.
	if span := duration(t, env, "GENLBRIDGE_FLUSH_TIMEOUT") + duration(t, env, "GENLBRIDGE_RETRY_MAX"); st.Duplicates < 4*span {
		t.Errorf("duplicate_window %s < 4 x (FLUSH_TIMEOUT + RETRY_MAX) = %s", st.Duplicates, 4*span)
	}
	// The bridges publish fast batches (one acknowledgement every few
	// messages) only into a stream that allows them; without, one a
	// message, which costs the hub several times more per event.
	if effective(t, env, "GENLBRIDGE_STREAM_FAST_BATCH") == "true" && !st.AllowBatchPublish {
		t.Errorf("GENLBRIDGE_STREAM_FAST_BATCH is on but the stream does not allow fast batches (allow_batched)")
	}
	// The bridge's STREAM settings describe this stream, so that
	// GENLBRIDGE_STREAM_MANAGE=true would find no difference.
	want := map[string]string{
		"GENLBRIDGE_STREAM":                  st.Name,
		"GENLBRIDGE_STREAM_SUBJECTS":         strings.Join(st.Subjects, ","),
		"GENLBRIDGE_STREAM_MAX_AGE":          st.MaxAge.String(),
		"GENLBRIDGE_STREAM_STORAGE":          st.Storage.String(),
		"GENLBRIDGE_STREAM_REPLICAS":         strconv.Itoa(st.Replicas),
		"GENLBRIDGE_STREAM_DUPLICATE_WINDOW": st.Duplicates.String(),
	}
	for name, w := range want {
		if _, ok := vars(t)[name]; !ok {
			t.Errorf("%s is not a setting of the binary", name)
			continue
		}
		got := effective(t, env, name)
		if d1, err1 := time.ParseDuration(got); err1 == nil {
			if d2, _ := time.ParseDuration(w); d1 == d2 {
				continue
			}
		}
		if !strings.EqualFold(got, w) {
			t.Errorf("%s = %q, the stream has %q", name, got, w)
		}
	}
	for _, n := range []struct {
		name string
		have int64
	}{{"GENLBRIDGE_STREAM_MAX_BYTES", st.MaxBytes}, {"GENLBRIDGE_STREAM_MAX_MSGS", st.MaxMsgs}} {
		var b config.ByteSize
		if err := b.Decode(effective(t, env, n.name)); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		if max(int64(b), -1) != n.have && !(b == 0 && n.have == -1) {
			t.Errorf("%s = %d, the stream has %d", n.name, b, n.have)
		}
	}

	// A JetStream server takes the file as `nats stream add --config` sends it
	// (with one replica: this server is alone).
	raw := map[string]any{}
	if err := json.Unmarshal(read(t, "nats/stream-genl.json"), &raw); err != nil {
		t.Fatal(err)
	}
	raw["num_replicas"] = 1
	req, _ := json.Marshal(raw)
	srv, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	resp, err := nc.Request("$JS.API.STREAM.CREATE."+st.Name, req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
		Config server.StreamConfig `json:"config"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Error != nil {
		t.Fatalf("the server refuses the stream: %s", r.Error.Description)
	}
	if r.Config.Duplicates != st.Duplicates || r.Config.MaxAge != st.MaxAge {
		t.Errorf("the server changed the stream: %+v", r.Config)
	}
}
