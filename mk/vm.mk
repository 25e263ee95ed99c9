# VM test of the kernel module (kmod/) under qemu, for Debian 12's kernels.
# Included by the root Makefile; paths are relative to the repository root.
#
#   make vm-deps      install qemu, static busybox and the kernel headers
#   make vm-kernels   vmlinuz of each kernel + genl_exmpl.ko built against
#                     that kernel's headers (W=1, no warnings allowed), in
#                     $(VM_DIR)/<kernel release>/
#   make vm-guest     the static guest test binary $(VM_GUEST_TEST)
#   make vm-test      all of the above, then boot each kernel in qemu and run
#                     the guest tests; fails if any fails or a VM hangs.
#                     Console logs: $(VM_DIR)/<kernel release>/console.log
#   make vm-clean     remove $(VM_DIR)
#   make demo         the module in a VM with the 6.1 kernel: genlbridge run
#                     and genlbridge tail in it, five periodic events, then a
#                     10000-event burst and its count; installs what it needs
#                     (as vm-deps, with one kernel's headers), builds, prints
#                     the guest's lines, exits 0 when the demo went right.
#
# Knobs: VM_ACCEL=tcg|kvm|auto, VM_TIMEOUT=15m, VM_RUN=<go test -run regexp>,
# VM_APPEND=<more kernel command-line words, e.g. vmtest_rcvbuf=default>,
# VM_KERNEL_PKGS (headers meta packages, one per kernel to test),
# VM_DEMO_PKG (the demo's kernel, as a headers meta package).

# Including this file must not change the including Makefile's default goal.
_vm_saved_default_goal := $(.DEFAULT_GOAL)

VM_DIR           ?= build/vm
# One headers meta package per kernel; apt resolves each to a kernel release.
VM_KERNEL_PKGS   ?= linux-headers-amd64 linux-headers-6.12-amd64
VM_TOOL_PKGS     ?= qemu-system-x86 busybox-static kmod
VM_PKGS          ?= $(VM_TOOL_PKGS) $(VM_KERNEL_PKGS)
VM_DEMO_PKG      ?= linux-headers-amd64
VM_GUEST_TEST    ?= $(VM_DIR)/vmtest.test
# Put in the VM when it exists; the root Makefile may set VM_TEST_DEPS to the
# target that builds it (CGO_ENABLED=0), so that vm-test builds it first.
VM_BRIDGE_BIN    ?= build/genlbridge
VM_TEST_DEPS     ?=
VM_ACCEL         ?= tcg
VM_TIMEOUT       ?= 15m
VM_RUN           ?=
VM_APPEND        ?=
VM_GO_TIMEOUT    ?= 60m
# Kernel releases, e.g. "6.1.0-56-amd64 6.12.117+deb12-amd64" (evaluated when used).
VM_KVERS          = $(shell vmtest/vm.sh kvers $(VM_KERNEL_PKGS))

.PHONY: vm-deps vm-kernels vm-guest vm-test bench-vm vm-clean demo

vm-deps:
	@vmtest/vm.sh deps $(VM_PKGS)

vm-kernels: vm-deps
	VM_DIR=$(VM_DIR) vmtest/vm.sh kernels $(VM_KERNEL_PKGS)

vm-guest:
	@mkdir -p $(dir $(VM_GUEST_TEST))
	CGO_ENABLED=0 go test -c -tags vmtest -o $(VM_GUEST_TEST) ./vmtest

vm-test: vm-kernels vm-guest $(VM_TEST_DEPS)
	VM_DIR=$(abspath $(VM_DIR)) VM_KVERS="$(VM_KVERS)" \
	VM_GUEST_TEST=$(abspath $(VM_GUEST_TEST)) VM_BRIDGE_BIN=$(abspath $(VM_BRIDGE_BIN)) \
	VM_ACCEL=$(VM_ACCEL) VM_TIMEOUT=$(VM_TIMEOUT) VM_RUN='$(VM_RUN)' VM_APPEND='$(VM_APPEND)' \
	go test -tags vmhost -run TestVM -v -count=1 -timeout $(VM_GO_TIMEOUT) ./vmtest

# The host side is the vmhost test binary in its demo mode (VM_DEMO=1), run
# directly so that its output streams and no test framework talks.
demo: $(VM_TEST_DEPS)
	@vmtest/vm.sh deps $(VM_TOOL_PKGS) $(VM_DEMO_PKG)
	@VM_DIR=$(VM_DIR) vmtest/vm.sh kernels $(VM_DEMO_PKG)
	@CGO_ENABLED=0 go test -c -tags vmhost -o $(VM_DIR)/vmhost.test ./vmtest
	@VM_DIR=$(abspath $(VM_DIR)) VM_DEMO=1 VM_DEMO_KVER="$$(vmtest/vm.sh kvers $(VM_DEMO_PKG))" \
	VM_BRIDGE_BIN=$(abspath $(VM_BRIDGE_BIN)) VM_ACCEL=$(VM_ACCEL) $(VM_DIR)/vmhost.test

# The module's BURST of 100,000 in the VM, side by side: a raw receiver
# (TestEmitAndBurst: genetlink Receive, 32 MiB buffer, counting) and the
# bridge with its defaults (TestBridgeBurst), then the bridge with the core
# NATS sink; one figure line each per kernel. TCG makes absolute rates
# meaningless: compare within a kernel.
bench-vm: vm-kernels vm-guest $(VM_TEST_DEPS)
	@for extra in "" "vmtest_bridge_env=GENLBRIDGE_SINK=nats"; do \
	  echo "==> bench-vm $${extra:-(bridge defaults)}"; \
	  VM_DIR=$(abspath $(VM_DIR)) VM_KVERS="$(VM_KVERS)" \
	  VM_GUEST_TEST=$(abspath $(VM_GUEST_TEST)) VM_BRIDGE_BIN=$(abspath $(VM_BRIDGE_BIN)) \
	  VM_ACCEL=$(VM_ACCEL) VM_TIMEOUT=$(VM_TIMEOUT) VM_RUN='^(TestEmitAndBurst|TestBridgeBurst)$$' VM_APPEND="$$extra" \
	  go test -tags vmhost -run TestVM -v -count=1 -timeout $(VM_GO_TIMEOUT) ./vmtest > $(VM_DIR)/bench-vm.log 2>&1; rc=$$?; \
	  grep -E 'VMTEST-INIT|VMTEST-METRIC (burst|bridge_burst)' $(VM_DIR)/bench-vm.log | sed 's/.*guest: //'; \
	  if [ $$rc -ne 0 ]; then tail -40 $(VM_DIR)/bench-vm.log; exit $$rc; fi; \
	done

vm-clean:
	rm -rf $(VM_DIR)

.DEFAULT_GOAL := $(_vm_saved_default_goal)
