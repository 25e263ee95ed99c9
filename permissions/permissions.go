// Package permissions computes what one node's bridge may do on the
// fleet's NATS: publish its own events and loss records (every subject its
// templates can make with its host, {op} included), read back what resume
// needs (direct gets of the stream), and receive replies on its own inbox
// prefix, so that a node can neither publish as another nor read another's
// acks. It is given no consumer: a push consumer's deliveries go to any
// subject of the account, which would let a node publish its records where
// its permissions do not reach.
//
// The bridge takes its inbox prefix from here,
// the auth callout responder and `genlbridge creds issue` put these
// permissions in the user JWTs they issue, and `genlbridge permissions`
// prints them: one computation for all. Pure functions; no state.
package permissions

import (
	"fmt"
	"slices"
	"strings"

	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/jwt/v2"
)

// Params are the bridge settings the permissions derive from.
type Params struct {
	// Node is the node's name, the bridge's host (GENLBRIDGE_NODE_NAME).
	Node string
	// Subject and LossSubject are the bridge's templates
	// (GENLBRIDGE_SUBJECT, GENLBRIDGE_LOSS_SUBJECT).
	Subject, LossSubject sink.Template
	// Stream is the JetStream stream (GENLBRIDGE_STREAM).
	Stream string
}

// Permissions are a node's: NATS subjects it may publish to and subscribe
// to, in the shape of nats-server's permissions (and of a user JWT's).
type Permissions struct {
	Publish   Subjects `json:"publish"`
	Subscribe Subjects `json:"subscribe"`
	// InboxPrefix is the prefix of the node's reply subjects (its
	// connection's nats.CustomInboxPrefix).
	InboxPrefix string `json:"inbox_prefix"`
}

// Subjects is an allow list.
type Subjects struct {
	Allow []string `json:"allow"`
}

// InboxPrefix is the inbox prefix of node's connection: "_INBOX_<host
// token>", so that its replies (JetStream acks among them) are subjects no
// other node may subscribe to.
func InboxPrefix(node string) string { return "_INBOX_" + pathSafe(sink.Token(node)) }

// pathSafe keeps path separators out of a subject token.
func pathSafe(tok string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, tok)
}

// Node returns p.Node's permissions. The templates must each hold {host}:
// otherwise a node's subjects cannot be told from another's.
func Node(p Params) (Permissions, error) {
	if p.Node == "" {
		return Permissions{}, fmt.Errorf("no node name")
	}
	// {host} must be a whole token at the same place in both templates:
	// inside a token (genl.x-{host}) a permission cannot name it, and at
	// two places a host named like another token ("netdev") would be
	// granted another's subjects.
	hostAt := -1
	for _, v := range []struct {
		name string
		t    sink.Template
	}{{"GENLBRIDGE_SUBJECT", p.Subject}, {"GENLBRIDGE_LOSS_SUBJECT", p.LossSubject}} {
		at := slices.Index(strings.Split(v.t.String(), "."), "{host}")
		if at < 0 {
			return Permissions{}, fmt.Errorf("%s=%s has no {host} token: a node's subjects could not be told from another's (want {host} as a whole token, as in genl.{family}.{group}.{host})", v.name, v.t)
		}
		if hostAt >= 0 && at != hostAt {
			return Permissions{}, fmt.Errorf("%s=%s has {host} as token %d and GENLBRIDGE_SUBJECT as token %d: a node's permissions could cover another's subjects (want {host} at the same place in both)", v.name, v.t, at+1, hostAt+1)
		}
		hostAt = at
	}
	if p.Stream == "" || strings.ContainsAny(p.Stream, ".*> ") {
		return Permissions{}, fmt.Errorf("stream name %q: want a name without dots, wildcards or spaces", p.Stream)
	}
	// Every subject the templates can make for this host: the other
	// placeholders as wildcards.
	events := p.Subject.Filter("", "", p.Node, "")
	losses := p.LossSubject.Filter("", "", p.Node, "")
	// What resume reads: the last event of a subscription (a direct get of
	// the last message by subject: its own subjects alone) and the last
	// few (batched direct gets, next by subject). NATS cannot restrict
	// the subject a batched direct get names in its body: a node may read
	// (never write) the stream's other records.
	api := "$JS.API."
	perms := Permissions{
		Publish: Subjects{Allow: []string{
			events,
			losses,
			api + "STREAM.INFO." + p.Stream,
			api + "DIRECT.GET." + p.Stream + "." + events,
			api + "DIRECT.GET." + p.Stream,
		}},
		Subscribe:   Subjects{Allow: []string{InboxPrefix(p.Node) + ".>"}},
		InboxPrefix: InboxPrefix(p.Node),
	}
	return perms, nil
}

// User returns the claims of a user JWT for node with these permissions:
// its subject is userPub (the user's public nkey), its name
// "genlbridge/<node>". The caller sets the expiry, the issuer account or
// audience, and signs it.
func (p Permissions) User(node, userPub string) *jwt.UserClaims {
	uc := jwt.NewUserClaims(userPub)
	uc.Name = "genlbridge/" + node
	uc.Pub.Allow.Add(p.Publish.Allow...)
	uc.Sub.Allow.Add(p.Subscribe.Allow...)
	return uc
}
