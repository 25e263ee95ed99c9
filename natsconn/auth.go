package natsconn

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// Auth says how to authenticate to NATS. Secrets come from files (or the
// environment, for Token and Password); none of them is ever logged: Auth's
// String method names only what is set.
type Auth struct {
	// CredsFile is a JWT user credentials file (.creds).
	CredsFile string
	// NKeySeedFile is a file holding a user nkey seed.
	NKeySeedFile string
	// Token or TokenFile (read again at every connect, so that a rotated
	// token, such as Kubernetes' projected service account token, is used).
	Token, TokenFile string
	// User with Password or PasswordFile.
	User, Password, PasswordFile string
	// TLSCA verifies the server; TLSCert and TLSKey are the client's
	// certificate for mutual TLS.
	TLSCA, TLSCert, TLSKey string
}

// String lists the methods in use, never a secret.
func (a Auth) String() string {
	var m []string
	if a.CredsFile != "" {
		m = append(m, "creds")
	}
	if a.NKeySeedFile != "" {
		m = append(m, "nkey")
	}
	if a.Token != "" || a.TokenFile != "" {
		m = append(m, "token")
	}
	if a.User != "" {
		m = append(m, "user/password")
	}
	if a.TLSCA != "" {
		m = append(m, "tls")
	}
	if a.TLSCert != "" {
		m = append(m, "mtls")
	}
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(m, "+")
}

func readSecret(what, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", what, path)
	}
	return s, nil
}

// Options turns a into nats.Options, reading the secret files now so that a
// missing or unreadable file is reported at start.
func (a Auth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.CredsFile != "" {
		if _, err := os.Stat(a.CredsFile); err != nil {
			return nil, fmt.Errorf("credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file: %w", err)
		}
		opts = append(opts, o)
	}
	switch {
	case a.TokenFile != "":
		t, err := readSecret("token file", a.TokenFile)
		if err != nil {
			return nil, err
		}
		// Read again at every connect: a Kubernetes projected service
		// account token is rotated in place. A file that cannot be read
		// then leaves the last token (the server says if it is refused).
		var mu sync.Mutex
		last, file := t, a.TokenFile
		opts = append(opts, nats.TokenHandler(func() string {
			mu.Lock()
			defer mu.Unlock()
			if t, err := readSecret("token file", file); err == nil {
				last = t
			}
			return last
		}))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	}
	if a.User != "" {
		pw := a.Password
		if a.PasswordFile != "" {
			p, err := readSecret("password file", a.PasswordFile)
			if err != nil {
				return nil, err
			}
			pw = p
		}
		opts = append(opts, nats.UserInfo(a.User, pw))
	} else if a.Password != "" || a.PasswordFile != "" {
		return nil, errors.New("a password without a user")
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key")
	}
	for what, f := range map[string]string{"TLS CA file": a.TLSCA, "TLS certificate": a.TLSCert, "TLS key": a.TLSKey} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts, nil
}
