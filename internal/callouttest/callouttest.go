// Package callouttest makes, for tests, the decentralized NATS identities
// of a fleet with per-node identity: an operator, its system account SYS,
// the bridges' account GENL (JetStream, a signing key that signs the
// users), and the callout account AUTH (its auth callout served by the
// responder's user, admitting users into GENL, and a bearer sentinel that
// token-only connections become), with the nats-server configuration that
// preloads them. The e2e and Kubernetes tests run a hub from it.
package callouttest

import (
	"fmt"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Fleet holds the keys and JWTs. Seeds are the nkey seeds' bytes.
type Fleet struct {
	OperatorJWT string
	SysPub      string
	sysJWT      string

	// GENL: the bridges' account.
	GenlPub     string
	GenlSeed    []byte // the account's own key
	GenlSigning []byte // a signing key of it (signs the users the responder issues)
	genlKP      nkeys.KeyPair
	genlJWT     string

	// AUTH: the callout account.
	AuthPub        string
	AuthSeed       []byte // signs the responder's answers
	authJWT        string
	ResponderCreds []byte // the responder's user in AUTH (.creds)
	Sentinel       string // the bearer user token-only connections become
}

// New makes a fleet's identities.
func New(t testing.TB) *Fleet {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, _ := okp.PublicKey()
	f := &Fleet{}
	f.OperatorJWT, err = jwt.NewOperatorClaims(opub).Encode(okp)
	must(err)
	account := func(name string, edit func(*jwt.AccountClaims)) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if edit != nil {
			edit(ac)
		}
		j, err := ac.Encode(okp)
		must(err)
		return kp, pub, j
	}
	_, f.SysPub, f.sysJWT = account("SYS", nil)
	signKP, err := nkeys.CreateAccount()
	must(err)
	signPub, _ := signKP.PublicKey()
	f.GenlSigning, _ = signKP.Seed()
	f.genlKP, f.GenlPub, f.genlJWT = account("GENL", func(ac *jwt.AccountClaims) {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		ac.SigningKeys.Add(signPub)
	})
	f.GenlSeed, _ = f.genlKP.Seed()
	respKP, err := nkeys.CreateUser()
	must(err)
	respPub, _ := respKP.PublicKey()
	authKP, authPub, authJWT := account("AUTH", func(ac *jwt.AccountClaims) {
		ac.EnableExternalAuthorization(respPub)
		ac.Authorization.AllowedAccounts.Add(f.GenlPub)
	})
	f.AuthPub, f.authJWT = authPub, authJWT
	f.AuthSeed, _ = authKP.Seed()
	f.ResponderCreds = creds(t, respKP, authKP, "callout-responder", nil)
	// A connection with a token alone (a bridge's) is the callout
	// account's sentinel, which may do nothing: the callout replaces it.
	skp, err := nkeys.CreateUser()
	must(err)
	spub, _ := skp.PublicKey()
	uc := jwt.NewUserClaims(spub)
	uc.Name, uc.BearerToken = "sentinel", true
	uc.Pub.Deny.Add(">")
	uc.Sub.Deny.Add(">")
	f.Sentinel, err = uc.Encode(authKP)
	must(err)
	return f
}

// UserCreds makes a .creds of a new user of GENL named name, signed with
// the account's key; edit, if set, changes its claims first.
func (f *Fleet) UserCreds(t testing.TB, name string, edit func(*jwt.UserClaims)) []byte {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	return creds(t, ukp, f.genlKP, name, edit)
}

func creds(t testing.TB, ukp, akp nkeys.KeyPair, name string, edit func(*jwt.UserClaims)) []byte {
	t.Helper()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	if edit != nil {
		edit(uc)
	}
	j, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	c, err := jwt.FormatUserConfig(j, seed)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ServerConfig is a nats-server configuration in operator mode that
// preloads the accounts (a memory resolver), sends token-only connections
// to the callout as the sentinel, and keeps JetStream in storeDir.
func (f *Fleet) ServerConfig(name string, port int, storeDir string) string {
	return fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
operator: %s
system_account: %s
resolver: MEM
resolver_preload: {
  %s: %s
  %s: %s
  %s: %s
}
default_sentinel: %s
jetstream { store_dir: %q }
`, name, port, f.OperatorJWT, f.SysPub, f.SysPub, f.sysJWT, f.AuthPub, f.authJWT, f.GenlPub, f.genlJWT, f.Sentinel, storeDir)
}
