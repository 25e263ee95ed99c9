package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/syncbuf"

	"github.com/genlbridge/genlbridge/broker"
	"github.com/nats-io/nats.go"
)

// A burst faster than tail prints arrives whole: nothing is dropped as a
// slow consumer.
func TestTailKeepsUpWithABurst(t *testing.T) {
	srv, err := broker.Start(broker.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	const n = 20000
	var out bytes.Buffer
	var errb syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- mainErr([]string{"tail", "--server", srv.URL(), "--count", fmt.Sprint(n), "--timeout", "30s", "--json", "genl.>"}, &out, &errb)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "tailing") { // printed once subscribed
		if time.Now().After(deadline) {
			t.Fatal("tail never subscribed: " + errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i := 1; i <= n; i++ {
		rec := fmt.Sprintf(`{"type":"event","host":"h","family":"f","group":"g","seq":%d,"seq_src":"kernel","format":"exmpl","msg":"%s"}`, i, strings.Repeat("x", 200))
		if err := nc.Publish("genl.f.g.h", []byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if lines := strings.Count(out.String(), "\n"); lines != n {
		t.Fatalf("%d lines, want %d; stderr: %s", lines, n, errb.String())
	}
}
