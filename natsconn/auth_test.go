package natsconn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/natstest"

	"github.com/genlbridge/genlbridge/natsconn"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pki makes a CA, a server certificate for 127.0.0.1 and a client certificate.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "genlbridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	save := func(name string, der []byte, typ string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(k)
		return save(name+".pem", der, "CERTIFICATE"), save(name+"-key.pem", kder, "EC PRIVATE KEY")
	}
	p := pki{ca: save("ca.pem", caDER, "CERTIFICATE")}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// jwtSetup makes an operator, an account and a user, and the server options
// that trust them.
func jwtSetup(t *testing.T) (creds string, opts func(*server.Options)) {
	t.Helper()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.IssuerAccount = apub
	ujwt, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	cfg, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	operator, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	return write(t, "user.creds", string(cfg)), func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{operator}
		r := &server.MemAccResolver{}
		r.Store(apub, ajwt)
		o.AccountResolver = r
	}
}

func TestAuthMethods(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := write(t, "user.nk", string(seed))
	otherKP, _ := nkeys.CreateUser()
	otherSeed, _ := otherKP.Seed()
	creds, jwtOpts := jwtSetup(t)
	p := newPKI(t)
	tlsOpts := func(verify bool) func(*server.Options) {
		return func(o *server.Options) {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: p.ca, Verify: verify})
			if err != nil {
				t.Fatal(err)
			}
			o.TLSConfig, o.TLS, o.TLSVerify = tc, true, verify
		}
	}
	cases := []struct {
		name   string
		server func(*server.Options)
		good   natsconn.Auth
		bad    natsconn.Auth
		badErr string
	}{
		{"token", func(o *server.Options) { o.Authorization = "s3cret-token" },
			natsconn.Auth{TokenFile: write(t, "token", "s3cret-token\n")}, natsconn.Auth{Token: "wrong"}, "authorization violation"},
		{"user/password", func(o *server.Options) { o.Username, o.Password = "bridge", "pa55" },
			natsconn.Auth{User: "bridge", PasswordFile: write(t, "pw", "pa55")}, natsconn.Auth{User: "bridge", Password: "nope"}, "authorization violation"},
		{"nkey", func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} },
			natsconn.Auth{NKeySeedFile: seedFile}, natsconn.Auth{NKeySeedFile: write(t, "other.nk", string(otherSeed))}, "authorization violation"},
		{"jwt creds", jwtOpts, natsconn.Auth{CredsFile: creds}, natsconn.Auth{}, "authorization violation"},
		{"tls", tlsOpts(false), natsconn.Auth{TLSCA: p.ca}, natsconn.Auth{}, "certificate"},
		{"mtls", tlsOpts(true), natsconn.Auth{TLSCA: p.ca, TLSCert: p.clientCert, TLSKey: p.clientKey}, natsconn.Auth{TLSCA: p.ca}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := natstest.StartServer(t, 0, c.server)
			defer srv.Shutdown()
			url := srv.URL()
			if strings.HasPrefix(c.name, "tls") || c.name == "mtls" {
				url = strings.Replace(url, "nats://", "tls://", 1)
			}
			opts, err := c.good.Options()
			if err != nil {
				t.Fatal(err)
			}
			nc, err := natsconn.Connect(natsconn.ConnConfig{URL: url, Options: opts, Logger: natstest.Logger()})
			if err != nil {
				t.Fatalf("%s: %v", c.good, err)
			}
			// A round trip through the authenticated connection.
			if err := nc.Publish("genl.x", []byte("{}")); err != nil {
				t.Fatal(err)
			}
			if err := nc.FlushTimeout(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			nc.Close()

			opts, err = c.bad.Options()
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = natsconn.Connect(natsconn.ConnConfig{URL: url, Options: opts, Logger: natstest.Logger()})
			if err == nil {
				t.Fatalf("wrong credentials (%s) accepted", c.bad)
			}
			if !strings.Contains(strings.ToLower(err.Error()), c.badErr) || !strings.Contains(err.Error(), "connect to nats") {
				t.Fatalf("error %q: want it to say %q", err, c.badErr)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("wrong credentials took %v to report", time.Since(start))
			}
			t.Logf("%s refused: %v", c.bad, err)
		})
	}
}

func TestAuthOptionErrors(t *testing.T) {
	for _, c := range []struct {
		a    natsconn.Auth
		want string
	}{
		{natsconn.Auth{CredsFile: "/nonexistent.creds"}, "credentials file"},
		{natsconn.Auth{NKeySeedFile: "/nonexistent.nk"}, "nkey seed file"},
		{natsconn.Auth{TokenFile: "/nonexistent"}, "token file"},
		{natsconn.Auth{Password: "x"}, "without a user"},
		{natsconn.Auth{TLSCert: "/a.pem"}, "both its certificate and its key"},
		{natsconn.Auth{TLSCA: "/nonexistent-ca.pem"}, "TLS CA file"},
	} {
		if _, err := c.a.Options(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.a, err, c.want)
		}
	}
	if s := (natsconn.Auth{Token: "hunter2", User: "u", Password: "p"}).String(); strings.Contains(s, "hunter2") || s != "token+user/password" {
		t.Errorf("String() = %q", s)
	}
}

func TestConnectWaitsForAServerThatIsNotUpYet(t *testing.T) {
	port := natstest.FreePort(t)
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Logger: natstest.Logger()})
	if err != nil {
		t.Fatalf("no server yet must not be an error: %v", err)
	}
	defer nc.Close()
	srv := natstest.StartServer(t, port, nil)
	defer srv.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("never connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A name that does not resolve is a server not reachable yet, whatever the
// name says: it is waited for, not taken for a TLS refusal.
func TestConnectWaitsThroughDNSFailure(t *testing.T) {
	start := time.Now()
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: "tls://nats-tls-certificate.invalid:4222", Logger: natstest.Logger()})
	if err != nil {
		t.Fatalf("an unresolvable host must be waited for, not refused: %v", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected to a host that does not exist")
	}
	t.Logf("first attempt failed after %v; retrying in the background", time.Since(start))
}

// A token file is read again at every connect: a rotated token (a
// Kubernetes projected service account token) is what the client
// reconnects with.
func TestTokenFileReadAtEveryConnect(t *testing.T) {
	file := write(t, "token", "first\n")
	start := func(token string, port int) *server.Server {
		t.Helper()
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, Authorization: token, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		return s
	}
	a := start("first", natstest.FreePort(t))
	port := a.Addr().(*net.TCPAddr).Port
	opts, err := natsconn.Auth{TokenFile: file}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Options: opts, Logger: natstest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	natstest.WaitFor(t, 10*time.Second, "connected with the first token", nc.IsConnected)
	// The token rotates, and so does the server's.
	if err := os.WriteFile(file, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.Shutdown()
	b := start("second", port)
	defer b.Shutdown()
	natstest.WaitFor(t, 20*time.Second, "reconnected with the second token", func() bool {
		return nc.IsConnected() && nc.ConnectedServerId() == b.ID()
	})
}

// A publish the server refuses for permissions is counted, passed on with
// its subject, and makes a streak that Persisting reports.
func TestDenials(t *testing.T) {
	port := natstest.FreePort(t)
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "node", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{"genl.*.*.node-a"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	d := natsconn.NewDenials(natstest.Logger())
	heard := make(chan string, 10)
	d.OnPublish(func(subject string) { heard <- subject })
	nc, err := natsconn.Connect(natsconn.ConnConfig{URL: fmt.Sprintf("nats://node:pw@127.0.0.1:%d", port), Logger: natstest.Logger(), Denials: d})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("genl.f.g.node-a", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("genl.f.g.node-b", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-heard:
		if got != "genl.f.g.node-b" {
			t.Fatalf("denied %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no denial heard")
	}
	if p, _ := d.Counts(); p != 1 {
		t.Fatalf("%d publish denials, want 1", p)
	}
	if _, subj, ok := d.Persisting(0); !ok || subj != "genl.f.g.node-b" {
		t.Fatalf("Persisting(0) = %q %v", subj, ok)
	}
	if _, _, ok := d.Persisting(time.Hour); ok {
		t.Fatal("a streak of a moment persists an hour")
	}
}
