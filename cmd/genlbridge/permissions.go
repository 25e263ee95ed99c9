package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/genlbridge/genlbridge/permissions"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// nodeParams are a node's permission parameters from the environment the
// bridge reads (GENLBRIDGE_SUBJECT, GENLBRIDGE_LOSS_SUBJECT,
// GENLBRIDGE_STREAM).
func nodeParams(node string) (permissions.Params, error) {
	events, losses, err := templatesFromEnv()
	if err != nil {
		return permissions.Params{}, err
	}
	stream := os.Getenv("GENLBRIDGE_STREAM")
	if stream == "" {
		stream = sink.DefaultStream.Name
	}
	return permissions.Params{Node: node, Subject: events, LossSubject: losses, Stream: stream}, nil
}

func defaultNode() string {
	if n := os.Getenv("GENLBRIDGE_NODE_NAME"); n != "" {
		return n
	}
	return os.Getenv("NODE_NAME")
}

func cmdPermissions(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("permissions", stderr, func(w io.Writer) {
		fmt.Fprintln(w, `Usage: genlbridge permissions --node NAME

Prints, as JSON, what the bridge of node NAME may do on the fleet's NATS, from
the settings the bridge reads (GENLBRIDGE_SUBJECT, GENLBRIDGE_LOSS_SUBJECT,
GENLBRIDGE_STREAM): publish its own events and loss records, read back its
own last events (resume), receive replies on its own inbox prefix. For a
nats-server configuration's permissions, or nsc's --allow-pub/--allow-sub.
The auth callout responder and 'genlbridge creds issue' grant exactly these.`)
	})
	node := fs.String("node", defaultNode(), "the node's name, as the bridge stamps it (env GENLBRIDGE_NODE_NAME)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *node == "" {
		return fmt.Errorf("give --node NAME: %w", errUsage)
	}
	p, err := nodeParams(*node)
	if err != nil {
		return err
	}
	perms, err := permissions.Node(p)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(perms)
}

func cmdCreds(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "issue" {
		fmt.Fprintln(stderr, "Usage: genlbridge creds issue --node NAME --account-key FILE [--account PUBKEY] [--expires 8760h] [--out FILE]")
		return errUsage
	}
	fs := newFlagSet("creds issue", stderr, func(w io.Writer) {
		fmt.Fprintln(w, `Usage: genlbridge creds issue --node NAME --account-key FILE [--account PUBKEY] [--expires D] [--out FILE]

Makes the NATS credentials (.creds: a user JWT and its nkey seed) of node
NAME for a fleet without Kubernetes: a new user of the account, signed with
the account's key or one of its signing keys (--account-key, a seed file;
with a signing key, --account names the account's public key), with the
permissions 'genlbridge permissions --node NAME' prints. Give the file to
the node's bridge as GENLBRIDGE_NATS_CREDS (readable by it alone).`)
	})
	node := fs.String("node", defaultNode(), "the node's name, as the bridge stamps it")
	keyFile := fs.String("account-key", "", "seed file of the account's key or signing key")
	account := fs.String("account", "", "the account's public key, when --account-key is a signing key")
	expires := fs.Duration("expires", 365*24*time.Hour, "how long the credentials are valid (0: no expiry)")
	out := fs.String("out", "", "write the credentials here (mode 0600) instead of standard output")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *node == "" || *keyFile == "" {
		return fmt.Errorf("give --node NAME and --account-key FILE: %w", errUsage)
	}
	seed, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("account key: %w", err)
	}
	akp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return fmt.Errorf("account key %s: %w", *keyFile, err)
	}
	apub, _ := akp.PublicKey()
	if !nkeys.IsValidPublicAccountKey(apub) {
		return fmt.Errorf("account key %s is not an account key (its public key is %s)", *keyFile, apub)
	}
	if *account != "" && !nkeys.IsValidPublicAccountKey(*account) {
		return fmt.Errorf("--account %s: want an account's public key (A...)", *account)
	}
	p, err := nodeParams(*node)
	if err != nil {
		return err
	}
	perms, err := permissions.Node(p)
	if err != nil {
		return err
	}
	ukp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	uc := perms.User(*node, upub)
	if *account != "" && *account != apub {
		uc.IssuerAccount = *account
	}
	if *expires > 0 {
		uc.Expires = time.Now().Add(*expires).Unix()
	}
	ujwt, err := uc.Encode(akp)
	if err != nil {
		return fmt.Errorf("sign the user: %w", err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(creds)
		return err
	}
	// Readable by its owner alone, whatever mode a file already there
	// had: made private before the seed goes in.
	if err := os.Chmod(*out, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := os.WriteFile(*out, creds, 0o600); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	fmt.Fprintf(stderr, "wrote the credentials of node %s (user %s) to %s\n", *node, upub, *out)
	return nil
}
