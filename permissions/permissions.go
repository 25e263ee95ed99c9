// Package permissions computes what one node's bridge may do on the
// fleet's NATS: publish its own events and loss records (every subject its
// templates can make with its host, {op} included), read back what resume
// needs of its own subjects, and receive replies on its own inbox prefix,
// so that a node can neither publish as another nor read another's acks.
//
// The bridge takes its inbox prefix and resume consumer name from here,
// the auth callout responder and `genlbridge creds issue` put these
// permissions in the user JWTs they issue, and `genlbridge permissions`
// prints them: one computation for all. Pure functions; no state.
package permissions

import (
	"fmt"
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
	// ResumeConsumer is the name of the consumer the bridge reads its last
	// events back with.
	ResumeConsumer string `json:"resume_consumer"`
}

// Subjects is an allow list.
type Subjects struct {
	Allow []string `json:"allow"`
}

// InboxPrefix is the inbox prefix of node's connection: "_INBOX_<host
// token>", so that its replies (JetStream acks among them) are subjects no
// other node may subscribe to.
func InboxPrefix(node string) string { return "_INBOX_" + consumerSafe(sink.Token(node)) }

// ResumeConsumer is the name of the consumer node's bridge reads its last
// events back with: one name per node, so that the permission to read
// through it and delete it names it alone.
func ResumeConsumer(node string) string { return "genlbridge_resume_" + consumerSafe(sink.Token(node)) }

// consumerSafe makes a subject token fit a consumer name (no path
// separators).
func consumerSafe(tok string) string {
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
	for name, t := range map[string]sink.Template{"GENLBRIDGE_SUBJECT": p.Subject, "GENLBRIDGE_LOSS_SUBJECT": p.LossSubject} {
		if !strings.Contains(t.String(), "{host}") {
			return Permissions{}, fmt.Errorf("%s=%s has no {host}: a node's subjects could not be told from another's", name, t)
		}
	}
	if p.Stream == "" || strings.ContainsAny(p.Stream, ".*> ") {
		return Permissions{}, fmt.Errorf("stream name %q: want a name without dots, wildcards or spaces", p.Stream)
	}
	// Every subject the templates can make for this host: the other
	// placeholders as wildcards.
	events := p.Subject.Filter("", "", p.Node, "")
	losses := p.LossSubject.Filter("", "", p.Node, "")
	// What resume reads: the last event of a subscription (a direct get by
	// subject) and the last few (a consumer of its own name, filtered on
	// its own subjects).
	resumeFilter := events
	cons := ResumeConsumer(p.Node)
	api := "$JS.API."
	perms := Permissions{
		Publish: Subjects{Allow: []string{
			events,
			losses,
			api + "STREAM.INFO." + p.Stream,
			api + "DIRECT.GET." + p.Stream + "." + resumeFilter,
			api + "CONSUMER.CREATE." + p.Stream + "." + cons + "." + resumeFilter,
			api + "CONSUMER.MSG.NEXT." + p.Stream + "." + cons,
			api + "CONSUMER.DELETE." + p.Stream + "." + cons,
		}},
		Subscribe:      Subjects{Allow: []string{InboxPrefix(p.Node) + ".>"}},
		InboxPrefix:    InboxPrefix(p.Node),
		ResumeConsumer: cons,
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
