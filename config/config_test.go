package config

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Subscribe) != 1 || c.Subscribe[0] != "CONTROL_EXMPL/EXMPL_GRP" || c.QueuePolicy != "block" ||
		c.BatchEvents != 1024 || c.BatchLinger != time.Millisecond || c.NATSURL != "" {
		t.Fatalf("defaults: %+v", c)
	}
	// Every default must itself be valid (Load checked them).
	for _, v := range Vars() {
		if !strings.HasPrefix(v.Env, "GENLBRIDGE_") || v.Desc == "" {
			t.Errorf("setting %+v lacks a prefix or a description", v)
		}
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	cases := []struct{ env, value, want string }{
		{"GENLBRIDGE_QUEUE_SIZE", "lots", "want a whole number"},
		{"GENLBRIDGE_QUEUE_SIZE", "0", "at least 1"},
		{"GENLBRIDGE_QUEUE_POLICY", "fast", "want one of block, drop-newest, drop-oldest"},
		{"GENLBRIDGE_BATCH_LINGER", "soon", "duration"},
		{"GENLBRIDGE_BATCH_LINGER", "-1ms", "positive duration"},
		{"GENLBRIDGE_RECEIVE_BUFFER", "big", "size in bytes"},
		{"GENLBRIDGE_RECEIVE_BUFFER", "1K", "at least 4KiB"},
		{"GENLBRIDGE_ALLOW_USERSPACE_SENDERS", "yes please", "true or false"},
		{"GENLBRIDGE_SUBSCRIBE", "CONTROL_EXMPL", "want family/group"},
		{"GENLBRIDGE_SUBSCRIBE", "a/b,a/b", "given twice"},
		{"GENLBRIDGE_SUBSCRIBE", "a/b:fancy", "decoder"},
		{"GENLBRIDGE_SUBJECT", "genl.>", "wildcards"},
		{"GENLBRIDGE_LOSS_SUBJECT", "genl.{nope}", "unknown placeholder"},
		{"GENLBRIDGE_READ_BATCH", "5000", "at most 1024"},
		{"GENLBRIDGE_LOG_FORMAT", "xml", "want one of text, json"},
	}
	for _, c := range cases {
		t.Run(c.env+"="+c.value, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			_, err := Load(nil, nil)
			var bv *BadValueError
			if !errors.As(err, &bv) {
				t.Fatalf("err = %v, want a BadValueError", err)
			}
			if bv.Env != c.env || !strings.Contains(err.Error(), c.env) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q: want it to name %s and say %q", err, c.env, c.want)
			}
		})
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Setenv("GENLBRIDGE_QUEUE_SIZE", "10")
	t.Setenv("GENLBRIDGE_BATCH_EVENTS", "7")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags := Flags(fs)
	if err := fs.Parse([]string{"--queue-size=20", "--receive-buffer=1MiB", "--subscribe=netdev/mgmt,CONTROL_EXMPL/EXMPL_GRP:exmpl"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs, flags)
	if err != nil {
		t.Fatal(err)
	}
	if c.QueueSize != 20 || c.BatchEvents != 7 || c.ReceiveBuffer != 1<<20 {
		t.Fatalf("got queue %d batch %d rcvbuf %d", c.QueueSize, c.BatchEvents, c.ReceiveBuffer)
	}
	subs, err := c.Subscriptions()
	if err != nil || len(subs) != 2 || subs[0].Family != "netdev" || subs[1].Decoder != "exmpl" {
		t.Fatalf("subscriptions %+v, %v", subs, err)
	}
	// A bad flag value names the flag too.
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	flags = Flags(fs)
	fs.Parse([]string{"--queue-size=many"})
	if _, err := Load(fs, flags); err == nil || !strings.Contains(err.Error(), "--queue-size") {
		t.Fatalf("err = %v", err)
	}
}

func TestNodeNameFallback(t *testing.T) {
	t.Setenv("NODE_NAME", "k8s-node-3")
	c, err := Load(nil, nil)
	if err != nil || c.NodeName != "k8s-node-3" {
		t.Fatalf("NodeName %q, %v", c.NodeName, err)
	}
	t.Setenv("GENLBRIDGE_NODE_NAME", "explicit")
	c, _ = Load(nil, nil)
	if c.NodeName != "explicit" {
		t.Fatalf("NodeName %q", c.NodeName)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int{"212992": 212992, "512KiB": 512 << 10, "32MiB": 32 << 20, "1GiB": 1 << 30, "64M": 64 << 20, "100B": 100} {
		var b ByteSize
		if err := b.Decode(in); err != nil || int(b) != want {
			t.Errorf("%q: %d, %v", in, b, err)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5MiB", "12XB"} {
		var b ByteSize
		if err := b.Decode(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Only GENLBRIDGE_* variables (and NODE_NAME) are read: envconfig's fallback
// to a field's bare name would let SINK, NATS_URL (the nats CLI's own),
// LOG_LEVEL, ... change the daemon.
func TestBareNamesAreNotRead(t *testing.T) {
	want, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Vars() {
		bare := strings.TrimPrefix(v.Env, Prefix+"_")
		if bare == "NODE_NAME" {
			continue
		}
		t.Setenv(bare, "bogus!value")
	}
	got, err := Load(nil, nil)
	if err != nil {
		t.Fatalf("with every bare name set to a bad value: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("bare names changed the configuration:\n got %+v\nwant %+v", got, want)
	}
	// And a GENLBRIDGE_ name still is read.
	t.Setenv("GENLBRIDGE_SINK", "bogus")
	if _, err := Load(nil, nil); err == nil || !strings.Contains(err.Error(), "GENLBRIDGE_SINK") {
		t.Fatalf("GENLBRIDGE_SINK=bogus: err = %v", err)
	}
}

func TestBooleanFlagsStandAlone(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags := Flags(fs)
	if err := fs.Parse([]string{"--pprof", "--stream-manage=false", "--queue-size", "9"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs, flags)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Pprof || c.StreamManage || c.QueueSize != 9 {
		t.Fatalf("pprof %v, stream manage %v, queue %d", c.Pprof, c.StreamManage, c.QueueSize)
	}
}

func TestReceiveBufferFitsTheKernel(t *testing.T) {
	for in, ok := range map[string]bool{"1GiB": true, "1025MiB": false, "3GiB": false} {
		t.Setenv("GENLBRIDGE_RECEIVE_BUFFER", in)
		_, err := Load(nil, nil)
		if (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "at most 1GiB")) {
			t.Errorf("RECEIVE_BUFFER=%s: err = %v", in, err)
		}
	}
}

// The JetStream settings are checked only when the daemon uses JetStream.
func TestStreamSettingsOnlyForJetStream(t *testing.T) {
	t.Setenv("GENLBRIDGE_FLUSH_TIMEOUT", "5m") // longer than the 2m duplicate window
	for _, c := range []struct {
		sink, url string
		js        bool
	}{{"auto", "", true}, {"jetstream", "nats://x:4222", true}, {"auto", "nats://x:4222", false}, {"nats", "", false}} {
		t.Setenv("GENLBRIDGE_SINK", c.sink)
		t.Setenv("GENLBRIDGE_NATS_URL", c.url)
		_, err := Load(nil, nil)
		if c.js != (err != nil) || (err != nil && !strings.Contains(err.Error(), "GENLBRIDGE_STREAM_DUPLICATE_WINDOW")) {
			t.Errorf("sink %s url %q: err = %v, want a duplicate window error: %v", c.sink, c.url, err, c.js)
		}
	}
}
