package schema_test

import (
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/schematest"
	"github.com/genlbridge/genlbridge/schema"
	"github.com/genlbridge/genlbridge/ynl/specs"
)

// Every family's document (of every spec genlbridge has built in, and of
// any family) compiles under a real 2020-12 validator.
func TestDocumentsCompile(t *testing.T) {
	reg, errs := specs.EmbeddedRegistry()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if _, err := schematest.Compile(schema.Document("", "", nil)); err != nil {
		t.Fatalf("the document of any family: %v", err)
	}
	for _, name := range reg.Families() {
		f, _, _ := reg.Family(name)
		for _, g := range append(f.Groups(), "") {
			if _, err := schematest.Compile(schema.Document(name, g, f)); err != nil {
				t.Errorf("%s/%s: %v", name, g, err)
			}
		}
	}
}

// Records of each format fit; a changed record does not.
func TestEnvelope(t *testing.T) {
	reg, _ := specs.EmbeddedRegistry()
	v := schematest.New(reg)
	base := event.Event{Host: "node-1", BootID: "630f1920-7243-4465-bfcf-0cef91172f87", Version: 1, Instance: 1795000000123456,
		RecvNS: 1795000000123999999}
	ynlEv := base
	ynlEv.Family, ynlEv.Group, ynlEv.Cmd, ynlEv.Seq, ynlEv.SeqSource, ynlEv.Format, ynlEv.Op = "netdev", "mgmt", 1, 3, event.SeqBridge, event.FormatYNL, "dev-add-ntf"
	ynlEv.Fields = []byte(`{"ifindex":3,"xdp-features":["basic","redirect"],"xdp-zc-max-segs":1,"xsk-features":[]}`)
	ex := base
	ex.Family, ex.Group, ex.Cmd, ex.Seq, ex.SeqSource, ex.Format, ex.Msg = "CONTROL_EXMPL", "EXMPL_GRP", 1, 1<<60, event.SeqKernel, event.FormatExmpl, "hi"
	ex.KernelNS, ex.Jiffies = 1795000000123456789, 4295123456
	gen := base
	gen.Family, gen.Group, gen.Cmd, gen.Seq, gen.SeqSource, gen.Format = "thermal", "event", 7, 1, event.SeqBridge, event.FormatGeneric
	gen.Attrs = []event.Attr{{Type: 1, Data: []byte{1, 0, 0, 0}}, {Type: 0x8002, Data: nil}}
	loss := event.Loss{Host: "node-1", BootID: base.BootID, Family: "CONTROL_EXMPL", Group: "EXMPL_GRP", Reason: event.ReasonSpoolFull,
		Count: 5, FirstSeq: 37, LastSeq: 41, Instance: base.Instance, TimeNS: 1795000000200000001}
	countOnly := event.Loss{Host: "node-1", BootID: base.BootID, Family: "netdev", Group: "mgmt", Reason: event.ReasonQueueFull, Count: 2, TimeNS: 1}
	good := map[string]string{
		"ynl":        string(event.AppendJSON(nil, &ynlEv)),
		"exmpl":      string(event.AppendJSON(nil, &ex)),
		"generic":    string(event.AppendJSON(nil, &gen)),
		"loss":       string(event.AppendLossJSON(nil, &loss)),
		"count only": string(event.AppendLossJSON(nil, &countOnly)),
	}
	for name, rec := range good {
		if err := v.Check([]byte(rec)); err != nil {
			t.Errorf("%s: %s: %v", name, rec, err)
		}
	}
	for _, c := range []struct{ name, rec string }{
		{"format 1", strings.Replace(good["exmpl"], `"v":2,`, ``, 1)},
		{"a time in ns", strings.Replace(good["exmpl"], `"recv_time":"2026-11-18T11:06:40.123999999Z"`, `"recv_ns":1795000000123999999`, 1)},
		{"a big seq as a number", strings.Replace(good["exmpl"], `"seq":"1152921504606846976"`, `"seq":1152921504606846976`, 1)},
		{"an op the spec does not have", strings.Replace(good["ynl"], `"dev-add-ntf"`, `"dev-ad-ntf"`, 1)},
		{"an attribute of another message", strings.Replace(good["ynl"], `"ifindex":3`, `"ifindex":3,"napi-id":4`, 1)},
		{"an unknown flag", strings.Replace(good["ynl"], `"basic"`, `"basik"`, 1)},
		{"generic attrs as an object", strings.Replace(good["generic"], `"attrs":[`, `"attrs":{"a":[`, 1) + "}"},
		{"an unknown reason", strings.Replace(good["loss"], `"spool_full"`, `"disk_full"`, 1)},
		{"first_seq without last_seq", strings.Replace(good["loss"], `,"last_seq":41`, ``, 1)},
		{"an unknown field", strings.Replace(good["loss"], `"count":5`, `"count":5,"extra":1`, 1)},
	} {
		if err := v.Check([]byte(c.rec)); err == nil {
			t.Errorf("%s: %s: valid", c.name, c.rec)
		}
	}
}
