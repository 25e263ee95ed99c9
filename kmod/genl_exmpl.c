// SPDX-License-Identifier: GPL-2.0
// The next line keeps the go tool from taking kmod/ for a cgo package.
//go:build ignore

/*
 * genl_exmpl - the CONTROL_EXMPL generic netlink event family, for 6.x kernels.
 *
 * A modern rewrite of the 2.6.35 seed module ("Using Netlink to post events
 * from kernelspace to userspace"): same family name, group name, version,
 * event command and MSG attribute, so that the seed's listener still works,
 * declared the way drivers/thermal/thermal_netlink.c does it.
 *
 * Every event is multicast to group EXMPL_GRP (index 0) of init_net with
 * command GENL_EXMPL_EVENT_C_DO and the attributes MSG, JIFFIES, SEQ and
 * TIMESTAMP. SEQ comes from one counter for all events, starting at 1, and is
 * consumed even when nobody listens, so a listener sees any gap as a loss.
 *
 * Events come from:
 *  - a delayed work item every period_ms ms ("Hello from kernel at jiffies N");
 *  - GENL_EXMPL_EVENT_C_EMIT (one event with the caller's MSG);
 *  - GENL_EXMPL_EVENT_C_BURST (COUNT events "burst i of COUNT", sent from a
 *    work item as fast as the kernel can).
 * Both commands need CAP_NET_ADMIN.
 *
 * With seed_payload=1 every event is sent in the seed's exact format instead:
 * only attribute MSG, a fixed 50-byte buffer holding the NUL-terminated text
 * followed by non-zero filler bytes, to prove that decoders stop at the NUL.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/workqueue.h>
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <net/netlink.h>

#include "genl_exmpl.h"

static unsigned int period_ms = 5000;
module_param(period_ms, uint, 0444);
MODULE_PARM_DESC(period_ms,
		 "Period of the \"Hello from kernel\" event in ms (default 5000, 0 disables it)");

static bool seed_payload;
module_param(seed_payload, bool, 0444);
MODULE_PARM_DESC(seed_payload,
		 "Send every event in the seed's format: only MSG, a fixed 50-byte buffer (default 0)");

/* Index of EXMPL_GRP in genl_exmpl_mcgrps, as genlmsg_multicast() wants it. */
enum genl_exmpl_multicast_groups {
	GENL_EXMPL_MCGRP_EVENTS = 0,
};

/* Filler after the NUL in the seed-format buffer: anything but zero. */
#define GENL_EXMPL_SEED_FILLER	0xa5

/* How many burst events to send between two cond_resched() calls. */
#define GENL_EXMPL_BURST_RESCHED	64

/* Room for "Hello from kernel at jiffies <u64>" and "burst <u32> of <u32>". */
#define GENL_EXMPL_TEXT_LEN	64

static atomic64_t genl_exmpl_seq = ATOMIC64_INIT(0);
/*
 * Serialises numbering and multicast: the periodic work, the burst work and
 * EMIT run on different CPUs, and without it an event could take SEQ n and
 * reach the sockets after n+1, which a listener must read as a loss and a
 * restart. A mutex, as every sender runs in process context with GFP_KERNEL.
 */
static DEFINE_MUTEX(genl_exmpl_send_mutex);

static void genl_exmpl_periodic_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(genl_exmpl_periodic_work, genl_exmpl_periodic_fn);

static void genl_exmpl_burst_fn(struct work_struct *work);
static DECLARE_WORK(genl_exmpl_burst_work, genl_exmpl_burst_fn);

/* Protects genl_exmpl_burst_running, genl_exmpl_burst_count and genl_exmpl_stopping. */
static DEFINE_SPINLOCK(genl_exmpl_burst_lock);
static bool genl_exmpl_burst_running;
static u32 genl_exmpl_burst_count;
/* Set on unload: no new burst may start and a running one stops early. */
static bool genl_exmpl_stopping;

/* Not const: 6.1's struct nla_policy points to it without const. */
static struct netlink_range_validation genl_exmpl_count_range __ro_after_init = {
	.min = 1,
	.max = GENL_EXMPL_EVENT_MAX_BURST,
};

static const struct nla_policy genl_exmpl_policy[GENL_EXMPL_EVENT_A_MAX + 1] = {
	[GENL_EXMPL_EVENT_A_MSG]	= { .type = NLA_NUL_STRING,
					    .len = GENL_EXMPL_EVENT_MSG_MAXLEN },
	[GENL_EXMPL_EVENT_A_JIFFIES]	= { .type = NLA_U64 },
	[GENL_EXMPL_EVENT_A_SEQ]	= { .type = NLA_U64 },
	[GENL_EXMPL_EVENT_A_TIMESTAMP]	= { .type = NLA_U64 },
	/*
	 * NLA_POLICY_RANGE() keeps its bounds in s16, too small for
	 * GENL_EXMPL_EVENT_MAX_BURST, so the range lives in a struct.
	 */
	[GENL_EXMPL_EVENT_A_COUNT]	= NLA_POLICY_FULL_RANGE(NLA_U32,
							&genl_exmpl_count_range),
};

static int genl_exmpl_emit_doit(struct sk_buff *skb, struct genl_info *info);
static int genl_exmpl_burst_doit(struct sk_buff *skb, struct genl_info *info);

static const struct genl_small_ops genl_exmpl_ops[] = {
	{
		.cmd	= GENL_EXMPL_EVENT_C_EMIT,
		.flags	= GENL_ADMIN_PERM,
		.doit	= genl_exmpl_emit_doit,
	},
	{
		.cmd	= GENL_EXMPL_EVENT_C_BURST,
		.flags	= GENL_ADMIN_PERM,
		.doit	= genl_exmpl_burst_doit,
	},
};

static const struct genl_multicast_group genl_exmpl_mcgrps[] = {
	[GENL_EXMPL_MCGRP_EVENTS] = { .name = GENL_EXMPL_EVENT_GROUPNAME, },
};

static struct genl_family genl_exmpl_family __ro_after_init = {
	.module		= THIS_MODULE,
	.name		= GENL_EXMPL_EVENT_FAMILYNAME,
	.version	= GENL_EXMPL_EVENT_VERSION,
	.maxattr	= GENL_EXMPL_EVENT_A_MAX,
	.policy		= genl_exmpl_policy,
	.small_ops	= genl_exmpl_ops,
	.n_small_ops	= ARRAY_SIZE(genl_exmpl_ops),
	.mcgrps		= genl_exmpl_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(genl_exmpl_mcgrps),
};

/* The seed's format: only MSG, a fixed buffer, non-zero bytes after the NUL. */
static int genl_exmpl_send_seed(const char *text, gfp_t gfp)
{
	char buf[GENL_EXMPL_EVENT_SEED_PAYLOAD_LEN];
	struct sk_buff *skb;
	void *hdr;

	memset(buf, GENL_EXMPL_SEED_FILLER, sizeof(buf));
	/* strscpy() truncates, terminates and does not pad. */
	strscpy(buf, text, sizeof(buf));

	skb = genlmsg_new(nla_total_size(sizeof(buf)), gfp);
	if (!skb)
		return -ENOMEM;

	hdr = genlmsg_put(skb, 0, 0, &genl_exmpl_family, 0,
			  GENL_EXMPL_EVENT_C_DO);
	if (!hdr)
		goto nla_put_failure;
	if (nla_put(skb, GENL_EXMPL_EVENT_A_MSG, sizeof(buf), buf))
		goto nla_put_failure;
	genlmsg_end(skb, hdr);

	return genlmsg_multicast(&genl_exmpl_family, skb, 0,
				 GENL_EXMPL_MCGRP_EVENTS, gfp);

nla_put_failure:
	nlmsg_free(skb);
	return -EMSGSIZE;
}

/*
 * __genl_exmpl_send_event - make one event and multicast it; the caller
 * holds genl_exmpl_send_mutex
 * @text: the event text (MSG)
 * @j: jiffies the event was made at
 * @gfp: allocation flags for the caller's context
 *
 * Consumes a sequence number whether or not anybody listens.
 * Returns 0 when sent or when nobody listens, a negative errno otherwise
 * (-ESRCH if the last listener left meanwhile).
 */
static int __genl_exmpl_send_event(const char *text, u64 j, gfp_t gfp)
{
	u64 seq = atomic64_inc_return(&genl_exmpl_seq);
	struct sk_buff *skb;
	size_t len;
	void *hdr;

	if (!genl_has_listeners(&genl_exmpl_family, &init_net,
				GENL_EXMPL_MCGRP_EVENTS))
		return 0;

	if (seed_payload)
		return genl_exmpl_send_seed(text, gfp);

	len = strlen(text) + 1;
	skb = genlmsg_new(nla_total_size(len) +
			  3 * nla_total_size_64bit(sizeof(u64)), gfp);
	if (!skb)
		return -ENOMEM;

	hdr = genlmsg_put(skb, 0, 0, &genl_exmpl_family, 0,
			  GENL_EXMPL_EVENT_C_DO);
	if (!hdr)
		goto nla_put_failure;
	if (nla_put_string(skb, GENL_EXMPL_EVENT_A_MSG, text) ||
	    nla_put_u64_64bit(skb, GENL_EXMPL_EVENT_A_JIFFIES, j,
			      GENL_EXMPL_EVENT_A_PAD) ||
	    nla_put_u64_64bit(skb, GENL_EXMPL_EVENT_A_SEQ, seq,
			      GENL_EXMPL_EVENT_A_PAD) ||
	    nla_put_u64_64bit(skb, GENL_EXMPL_EVENT_A_TIMESTAMP,
			      ktime_get_real_ns(), GENL_EXMPL_EVENT_A_PAD))
		goto nla_put_failure;
	genlmsg_end(skb, hdr);

	return genlmsg_multicast(&genl_exmpl_family, skb, 0,
				 GENL_EXMPL_MCGRP_EVENTS, gfp);

nla_put_failure:
	nlmsg_free(skb);
	return -EMSGSIZE;
}

/* Events reach the sockets in SEQ order: see genl_exmpl_send_mutex. */
static int genl_exmpl_send_event(const char *text, u64 j, gfp_t gfp)
{
	int err;

	mutex_lock(&genl_exmpl_send_mutex);
	err = __genl_exmpl_send_event(text, j, gfp);
	mutex_unlock(&genl_exmpl_send_mutex);
	return err;
}

static void genl_exmpl_periodic_fn(struct work_struct *work)
{
	char text[GENL_EXMPL_TEXT_LEN];
	u64 j = get_jiffies_64();

	snprintf(text, sizeof(text), "Hello from kernel at jiffies %llu", j);
	genl_exmpl_send_event(text, j, GFP_KERNEL);

	schedule_delayed_work(&genl_exmpl_periodic_work,
			      msecs_to_jiffies(READ_ONCE(period_ms)));
}

static void genl_exmpl_burst_fn(struct work_struct *work)
{
	char text[GENL_EXMPL_TEXT_LEN];
	u32 count, i;

	spin_lock(&genl_exmpl_burst_lock);
	count = genl_exmpl_burst_count;
	spin_unlock(&genl_exmpl_burst_lock);

	for (i = 1; i <= count; i++) {
		if (READ_ONCE(genl_exmpl_stopping))
			break;
		snprintf(text, sizeof(text), "burst %u of %u", i, count);
		/* Losses show up as SEQ gaps and socket drops; go on. */
		genl_exmpl_send_event(text, get_jiffies_64(), GFP_KERNEL);
		if (i % GENL_EXMPL_BURST_RESCHED == 0)
			cond_resched();
	}
	pr_debug("burst of %u done (%u sent)\n", count, i - 1);

	spin_lock(&genl_exmpl_burst_lock);
	genl_exmpl_burst_running = false;
	spin_unlock(&genl_exmpl_burst_lock);
}

static int genl_exmpl_emit_doit(struct sk_buff *skb, struct genl_info *info)
{
	int err;

	if (!info->attrs[GENL_EXMPL_EVENT_A_MSG]) {
		NL_SET_ERR_ATTR_MISS(info->extack, NULL, GENL_EXMPL_EVENT_A_MSG);
		NL_SET_ERR_MSG(info->extack, "missing MSG attribute");
		return -EINVAL;
	}

	err = genl_exmpl_send_event(nla_data(info->attrs[GENL_EXMPL_EVENT_A_MSG]),
				    get_jiffies_64(), GFP_KERNEL);
	/* The listener left between the check and the send: not our error. */
	if (err == -ESRCH)
		err = 0;
	return err;
}

static int genl_exmpl_burst_doit(struct sk_buff *skb, struct genl_info *info)
{
	int err = 0;
	u32 count;

	if (!info->attrs[GENL_EXMPL_EVENT_A_COUNT]) {
		NL_SET_ERR_ATTR_MISS(info->extack, NULL, GENL_EXMPL_EVENT_A_COUNT);
		NL_SET_ERR_MSG(info->extack, "missing COUNT attribute");
		return -EINVAL;
	}
	/* The policy has checked 1 <= count <= GENL_EXMPL_EVENT_MAX_BURST. */
	count = nla_get_u32(info->attrs[GENL_EXMPL_EVENT_A_COUNT]);

	spin_lock(&genl_exmpl_burst_lock);
	if (genl_exmpl_stopping) {
		NL_SET_ERR_MSG(info->extack, "module is unloading");
		err = -ESHUTDOWN;
	} else if (genl_exmpl_burst_running) {
		NL_SET_ERR_MSG(info->extack, "a burst is already running");
		err = -EBUSY;
	} else {
		genl_exmpl_burst_running = true;
		genl_exmpl_burst_count = count;
		queue_work(system_unbound_wq, &genl_exmpl_burst_work);
	}
	spin_unlock(&genl_exmpl_burst_lock);

	return err;
}

static int __init genl_exmpl_init(void)
{
	int err;

	err = genl_register_family(&genl_exmpl_family);
	if (err) {
		pr_err("cannot register family %s: %d\n",
		       GENL_EXMPL_EVENT_FAMILYNAME, err);
		return err;
	}

	if (period_ms)
		schedule_delayed_work(&genl_exmpl_periodic_work,
				      msecs_to_jiffies(period_ms));

	pr_info("family %s registered, period_ms=%u seed_payload=%d\n",
		GENL_EXMPL_EVENT_FAMILYNAME, period_ms, seed_payload);
	return 0;
}

static void __exit genl_exmpl_exit(void)
{
	/* No new burst; a running one stops at its next event. */
	spin_lock(&genl_exmpl_burst_lock);
	genl_exmpl_stopping = true;
	spin_unlock(&genl_exmpl_burst_lock);

	cancel_work_sync(&genl_exmpl_burst_work);
	cancel_delayed_work_sync(&genl_exmpl_periodic_work);

	/* Waits for running handlers; EMIT may send until then, which is fine. */
	genl_unregister_family(&genl_exmpl_family);

	pr_info("family %s unregistered after %lld events\n",
		GENL_EXMPL_EVENT_FAMILYNAME,
		(long long)atomic64_read(&genl_exmpl_seq));
}

module_init(genl_exmpl_init);
module_exit(genl_exmpl_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("CONTROL_EXMPL generic netlink event family (example)");
MODULE_ALIAS_GENL_FAMILY(GENL_EXMPL_EVENT_FAMILYNAME);
