/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Wire contract of the CONTROL_EXMPL generic netlink family.
 *
 * These numbers are the same as in the Go package
 * github.com/genlbridge/genlbridge/exmpl and in the YNL spec
 * kmod/control_exmpl.yaml; kmod/header_test.go keeps the three in step.
 * The first entries are unchanged from the 2.6.35 seed module so that old
 * listeners keep working: family "CONTROL_EXMPL", group "EXMPL_GRP",
 * version 1, event command DO = 1 carrying attribute MSG = 1.
 *
 * Every value below is written out explicitly: the numbers are ABI.
 */
#ifndef _GENL_EXMPL_H
#define _GENL_EXMPL_H

#define GENL_EXMPL_EVENT_FAMILYNAME	"CONTROL_EXMPL"
#define GENL_EXMPL_EVENT_GROUPNAME	"EXMPL_GRP"
#define GENL_EXMPL_EVENT_VERSION	1

/* Largest COUNT accepted by GENL_EXMPL_EVENT_C_BURST. */
#define GENL_EXMPL_EVENT_MAX_BURST	10000000
/* Longest MSG string accepted by GENL_EXMPL_EVENT_C_EMIT, without the NUL. */
#define GENL_EXMPL_EVENT_MSG_MAXLEN	256
/* Size of the seed's fixed message buffer (module parameter seed_payload=1). */
#define GENL_EXMPL_EVENT_SEED_PAYLOAD_LEN	50

/* attributes */
enum {
	GENL_EXMPL_EVENT_A_UNSPEC = 0,
	/* NUL-terminated string: the event text */
	GENL_EXMPL_EVENT_A_MSG = 1,
	/* u64: jiffies when the event was made */
	GENL_EXMPL_EVENT_A_JIFFIES = 2,
	/* u64: event sequence number, one counter for all events, from 1 */
	GENL_EXMPL_EVENT_A_SEQ = 3,
	/* u64: wall-clock time of the event, ns since the epoch */
	GENL_EXMPL_EVENT_A_TIMESTAMP = 4,
	/* padding for the 64-bit attributes */
	GENL_EXMPL_EVENT_A_PAD = 5,
	/* u32: number of events a BURST sends, 1..GENL_EXMPL_EVENT_MAX_BURST */
	GENL_EXMPL_EVENT_A_COUNT = 6,

	__GENL_EXMPL_EVENT_A_MAX,
};
#define GENL_EXMPL_EVENT_A_MAX (__GENL_EXMPL_EVENT_A_MAX - 1)

/* commands */
enum {
	GENL_EXMPL_EVENT_C_UNSPEC = 0,
	/* event: the command of every multicast event (as in the seed) */
	GENL_EXMPL_EVENT_C_DO = 1,
	/* request: multicast one event carrying MSG (needs CAP_NET_ADMIN) */
	GENL_EXMPL_EVENT_C_EMIT = 2,
	/* request: multicast COUNT events as fast as possible (CAP_NET_ADMIN) */
	GENL_EXMPL_EVENT_C_BURST = 3,

	__GENL_EXMPL_EVENT_C_MAX,
};
#define GENL_EXMPL_EVENT_C_MAX (__GENL_EXMPL_EVENT_C_MAX - 1)

#endif /* _GENL_EXMPL_H */
