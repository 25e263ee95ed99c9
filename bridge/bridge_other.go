//go:build !linux

package bridge

import (
	"context"
	"errors"
)

type sockState struct{}

// Run needs Linux's generic netlink sockets.
func (b *Bridge) Run(ctx context.Context) error {
	return errors.New("genlbridge reads generic netlink sockets, which only Linux has")
}
