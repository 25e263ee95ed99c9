// Command consumer reads genlbridge's records from a JetStream stream and
// prints one line per record, every field exact: event.Envelope reads
// format 2 (and 1) with its 64-bit integers and RFC 3339 times.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	server := flag.String("server", nats.DefaultURL, "NATS server")
	stream := flag.String("stream", "GENL", "stream")
	flag.Parse()
	nc, err := nats.Connect(*server)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, *stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		log.Fatal(err)
	}
	for pending := cons.CachedInfo().NumPending; pending > 0; pending-- {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			log.Fatal(err)
		}
		// A batched message holds several records, one per line.
		for _, line := range strings.Split(strings.TrimSpace(string(m.Data())), "\n") {
			var r event.Envelope
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				log.Fatal(err)
			}
			fmt.Println(describe(&r))
		}
	}
}

// describe is the record's line: its type, subscription and numbers, times
// as RFC 3339 text, attrs as JSON with sorted keys.
func describe(r *event.Envelope) string {
	if r.Type == "loss" {
		return fmt.Sprintf("loss %s %s/%s reason=%s count=%d seq=%d-%d time=%s", r.Host, r.Family, r.Group,
			r.Reason, r.Count, r.FirstSeq, r.LastSeq, rfc3339(r.TimeNS))
	}
	attrs := "{}"
	if len(r.Fields) > 0 {
		var v any
		d := json.NewDecoder(strings.NewReader(string(r.Fields)))
		d.UseNumber() // numbers as their text: exact
		if err := d.Decode(&v); err != nil {
			log.Fatal(err)
		}
		b, _ := json.Marshal(v) // maps marshal with sorted keys
		attrs = string(b)
	}
	return fmt.Sprintf("event %s %s/%s seq=%d instance=%d time=%s attrs=%s", r.Host, r.Family, r.Group,
		r.Seq, r.Instance, rfc3339(r.RecvNS), attrs)
}

func rfc3339(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}
