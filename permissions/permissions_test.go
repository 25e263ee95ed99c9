package permissions

import (
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/sink"
)

// matches reports whether NATS subject s matches pattern p (* one token,
// > the rest).
func matches(p, s string) bool {
	pt, st := strings.Split(p, "."), strings.Split(s, ".")
	for i, tok := range pt {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) || tok != "*" && tok != st[i] {
			return false
		}
	}
	return len(pt) == len(st)
}

func allowed(perms []string, s string) bool {
	for _, p := range perms {
		if matches(p, s) {
			return true
		}
	}
	return false
}

func TestNode(t *testing.T) {
	for _, c := range []struct{ subject, loss string }{
		{sink.DefaultSubject, sink.DefaultLossSubject},
		{"genl.{family}.{group}.{host}.{op}", sink.DefaultLossSubject},
		{"fleet.{host}.{family}", "fleet.{host}.loss.{family}.{group}"},
	} {
		ev, _ := sink.ParseTemplate(c.subject)
		lo, _ := sink.ParseTemplate(c.loss)
		p, err := Node(Params{Node: "node-1.example.com", Subject: ev, LossSubject: lo, Stream: "GENL"})
		if err != nil {
			t.Fatal(err)
		}
		for _, host := range []string{"node-1.example.com", "node-2"} {
			mine := host == "node-1.example.com"
			for _, s := range []string{ev.Subject("netdev", "mgmt", host, "dev-add-ntf"), lo.Subject("netdev", "mgmt", host, ""),
				"$JS.API.DIRECT.GET.GENL." + ev.Subject("netdev", "mgmt", host, "dev-add-ntf")} {
				if allowed(p.Publish.Allow, s) != mine {
					t.Errorf("%s: publish to %s allowed %v", c.subject, s, !mine)
				}
			}
			if allowed(p.Subscribe.Allow, InboxPrefix(host)+".abc.1") != mine {
				t.Errorf("subscribe to %s's inbox allowed %v", host, !mine)
			}
		}
		for _, s := range []string{"$JS.API.STREAM.INFO.GENL", "$JS.API.DIRECT.GET.GENL"} {
			if !allowed(p.Publish.Allow, s) {
				t.Errorf("%s not allowed", s)
			}
		}
		// No consumer of any kind: a push consumer delivers anywhere.
		for _, s := range []string{"$JS.API.STREAM.DELETE.GENL", "$JS.API.CONSUMER.CREATE.GENL", "$JS.API.CONSUMER.CREATE.GENL.c." + ev.Subject("netdev", "mgmt", "node-1.example.com", "x"),
			"$JS.API.CONSUMER.DURABLE.CREATE.GENL.c", "$JS.API.CONSUMER.MSG.NEXT.GENL.c", "$JS.API.CONSUMER.DELETE.GENL.c", "$JS.API.STREAM.PURGE.GENL", "$JS.API.STREAM.MSG.GET.GENL", "_INBOX.x"} {
			if allowed(p.Publish.Allow, s) {
				t.Errorf("%s allowed", s)
			}
		}
		if p.InboxPrefix != "_INBOX_node-1_example_com" {
			t.Errorf("inbox prefix %q", p.InboxPrefix)
		}
	}
	for _, c := range []struct{ subject, loss, want string }{
		{"genl.{family}.{group}", "genl.{family}.{group}.loss", "no {host} token"},
		// Inside a token, a permission cannot name the host.
		{"genl.{family}.{group}-{host}", "genl.{family}.{group}.{host}.loss", "no {host} token"},
		// At two places, a node named "netdev" would get genl.netdev.*.*:
		// every node's netdev loss records.
		{"genl.{host}.{family}.{group}", "genl.{family}.{group}.{host}", "at the same place"},
	} {
		ev, err1 := sink.ParseTemplate(c.subject)
		lo, err2 := sink.ParseTemplate(c.loss)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if _, err := Node(Params{Node: "netdev", Subject: ev, LossSubject: lo, Stream: "GENL"}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s and %s: %v, want an error saying %q", c.subject, c.loss, err, c.want)
		}
	}
}
