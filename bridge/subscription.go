package bridge

import (
	"fmt"
	"slices"
	"strings"

	"github.com/genlbridge/genlbridge/exmpl"
)

// Subscription names one multicast group of one generic netlink family, by
// name, and how to decode its messages.
type Subscription struct {
	Family  string
	Group   string
	Decoder string // DecodeAuto, DecodeYNL, DecodeExmpl or DecodeGeneric
}

// String returns the subscription in the form ParseSubscription reads.
func (s Subscription) String() string {
	if s.Decoder == "" || s.Decoder == DecodeAuto {
		return s.Family + "/" + s.Group
	}
	return s.Family + "/" + s.Group + ":" + s.Decoder
}

// ParseSubscription reads "family/group" or "family/group:decoder".
func ParseSubscription(v string) (Subscription, error) {
	v = strings.TrimSpace(v)
	spec, dec, hasDec := strings.Cut(v, ":")
	fam, grp, ok := strings.Cut(spec, "/")
	if !ok || fam == "" || grp == "" || strings.Contains(grp, "/") {
		return Subscription{}, fmt.Errorf("subscription %q: want family/group, e.g. %s/%s", v, exmpl.FamilyName, exmpl.GroupName)
	}
	// GENL_NAMSIZ is 16 including the NUL.
	if len(fam) > 15 || len(grp) > 15 {
		return Subscription{}, fmt.Errorf("subscription %q: family and group names have at most 15 bytes", v)
	}
	s := Subscription{Family: fam, Group: grp, Decoder: DecodeAuto}
	if hasDec {
		if !slices.Contains(Decoders, dec) {
			return Subscription{}, fmt.Errorf("subscription %q: decoder %q: want one of %s", v, dec, strings.Join(Decoders, ", "))
		}
		s.Decoder = dec
	}
	return s, nil
}

// ParseSubscriptions reads a comma-separated list, rejecting duplicates.
func ParseSubscriptions(list []string) ([]Subscription, error) {
	var out []Subscription
	seen := map[string]bool{}
	for _, item := range list {
		for _, v := range strings.Split(item, ",") {
			if strings.TrimSpace(v) == "" {
				continue
			}
			s, err := ParseSubscription(v)
			if err != nil {
				return nil, err
			}
			key := s.Family + "/" + s.Group
			if seen[key] {
				return nil, fmt.Errorf("subscription %q given twice", key)
			}
			seen[key] = true
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no subscription: want at least one family/group")
	}
	return out, nil
}
