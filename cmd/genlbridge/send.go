package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/genlbridge/genlbridge/exmpl"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

func cmdSend(args []string, stdout, stderr io.Writer) error {
	help := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: genlbridge send emit MESSAGE | send burst COUNT\n\nAsks the %s kernel module to multicast events (needs CAP_NET_ADMIN).\n", exmpl.FamilyName)
	}
	fs := newFlagSet("send", stderr, help)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		help(stderr)
		return errUsage
	}
	ae := netlink.NewAttributeEncoder()
	var cmd uint8
	switch fs.Arg(0) {
	case "emit":
		cmd = exmpl.CmdEmit
		ae.String(exmpl.AttrMsg, fs.Arg(1))
	case "burst":
		n, err := strconv.ParseUint(fs.Arg(1), 10, 32)
		if err != nil || n < 1 || n > exmpl.MaxBurst {
			return fmt.Errorf("burst count %q: want a whole number from 1 to %d", fs.Arg(1), exmpl.MaxBurst)
		}
		cmd = exmpl.CmdBurst
		ae.Uint32(exmpl.AttrCount, uint32(n))
	default:
		help(stderr)
		return errUsage
	}
	data, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("encode attributes: %w", err)
	}
	c, err := genetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("dial generic netlink: %w", err)
	}
	defer c.Close()
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	f, err := c.GetFamily(exmpl.FamilyName)
	if err != nil {
		return fmt.Errorf("resolve family %q (is the module loaded?): %w", exmpl.FamilyName, err)
	}
	_, err = c.Execute(genetlink.Message{Header: genetlink.Header{Command: cmd, Version: exmpl.Version}, Data: data},
		f.ID, netlink.Request|netlink.Acknowledge)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	fmt.Fprintf(stdout, "sent %s %s\n", fs.Arg(0), fs.Arg(1))
	return nil
}
