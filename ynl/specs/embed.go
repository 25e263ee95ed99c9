// Package specs holds the YNL specs and overrides genlbridge embeds in its
// binary, so that a node with nothing installed (no linux-doc, no kernel
// tree) can decode the generic netlink families a fleet usually wants.
//
// The specs are genlbridge's own, in the kernel's YNL format
// (Documentation/userspace-api/netlink/specs.rst), written from the UAPI
// headers of Linux 6.12 (include/uapi/linux/*.h) and, for the families that
// have no UAPI header, from the kernel source that defines them. They
// describe the notification side of each family: the messages the kernel
// multicasts and the attributes they carry, with every attribute and
// message number as the kernel enums assign it. They are not copies of the
// kernel's own spec files.
//
//   - netdev.yaml: device add/del/change and page pool notifications
//     (groups mgmt, page-pool).
//   - mptcp_pm.yaml: Multipath TCP path manager events (mptcp_pm_events).
//   - ethtool.yaml: ethtool settings change notifications (monitor).
//   - thermal.yaml: thermal zone, trip point, cooling device and CPU
//     capability events (event) and temperature samples (sampling).
//   - acpi_event.yaml: ACPI events (acpi_mc_group), from
//     drivers/acpi/event.c.
//   - VFS_DQUOT.yaml: disk quota warnings (events).
//   - NET_DM.yaml: drop monitor alerts, summary and per packet (events).
//   - nlctrl.yaml: the generic netlink controller's notifications of
//     families and groups appearing and going (notify).
//
// Files named <family>.override.yaml are genlbridge's own format, not YNL:
// they say which messages of which group decode with which operation,
// attribute set or enum of a family's spec, for the specs that do not say
// (the kernel's 6.12 specs of mptcp_pm, ethtool, devlink, team and nlctrl
// name no notification for their groups). There are overrides for
// mptcp_pm, ethtool, devlink, team, nlctrl and CONTROL_EXMPL; devlink and
// team have no spec here and take the kernel's one (linux-doc).
//
// README.md tells what each family's events mean, which network namespaces
// they reach and how to subscribe to them.
package specs

import "embed"

// FS holds every spec (<family>.yaml) and override (<family>.override.yaml)
// of this directory.
//
//go:embed *.yaml
var FS embed.FS
