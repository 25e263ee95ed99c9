# The image, and the DaemonSet of deploy/ on a real one-node Kubernetes.
# Included by the root Makefile; paths are relative to the repository root.
#
#   make image       the root Dockerfile built with buildah, no registry
#                    needed: a manifest list for linux/amd64 and linux/arm64
#                    in $(IMAGE_DIR)/oci (an OCI layout, named $(IMAGE_TAG))
#                    and $(IMAGE_DIR)/genlbridge.tar (the same, one archive);
#                    buildah's store and caches stay in $(IMAGE_DIR)
#   make k8s-deps    Debian's etcd-server, containerd, runc,
#                    containernetworking-plugins, buildah, busybox-static,
#                    gcc (installed with no service started)
#   make k8s-bins    kube-apiserver, kube-controller-manager, kube-scheduler,
#                    kubelet and kubectl v1.34 from the Go module proxy
#                    (k8stest/kube, one go build), and the sandbox's pause
#                    (gcc -static, Kubernetes' pause.c), in $(K8S_BIN);
#                    built once, kept until k8stest/kube's go.mod changes
#   make k8s-test    all of the above, then the tests of k8stest (root): a
#                    cluster of one node on this machine, the DaemonSet
#                    through a test overlay, events, rollouts, the spool,
#                    SIGTERM, the probes, the example without NET_ADMIN.
#                    The components' logs are copied to $(K8S_DIR)/logs.
#   make k8s-clean   remove $(K8S_DIR) and $(IMAGE_DIR)
#
# Knobs: K8S_RUN=<go test -run regexp>, K8S_TIMEOUT=40m, IMAGE_TAG=dev,
# K8S_GOCACHE and K8S_GOMODCACHE (the Go caches of the Kubernetes build,
# the machine's by default).

# Including this file must not change the including Makefile's default goal.
_k8s_saved_default_goal := $(.DEFAULT_GOAL)

K8S_DIR        ?= build/k8s
K8S_BIN        := $(K8S_DIR)/bin
K8S_VERSION    := $(shell sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$$/\1/p' k8stest/kube/go.mod)
K8S_CMDS       := kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
K8S_RUN        ?=
K8S_TIMEOUT    ?= 40m
K8S_GOCACHE    ?= $(shell go env GOCACHE)
K8S_GOMODCACHE ?= $(shell go env GOMODCACHE)
K8S_APT_PKGS   := etcd-server containerd runc containernetworking-plugins buildah busybox-static gcc libc6-dev util-linux iproute2
K8S_GO         := cd k8stest/kube && GOCACHE=$(K8S_GOCACHE) GOMODCACHE=$(K8S_GOMODCACHE) GOFLAGS=-p=2 CGO_ENABLED=0 nice -n 10 go
# The version the components report (and kubectl version shows).
K8S_LDFLAGS    := -s -w \
  -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=34 \
  -X k8s.io/component-base/version.gitTreeState=clean \
  -X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/client-go/pkg/version.gitMajor=1 \
  -X k8s.io/client-go/pkg/version.gitMinor=34

IMAGE_DIR      ?= build/image
IMAGE_TAG      ?= dev
IMAGE_VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: image k8s-deps k8s-bins k8s-test k8s-clean

# Debian packages, installed with a policy-rc.d that starts no service
# (etcd and containerd run only as the test's processes), removed again if
# it was not there before.
k8s-deps:
	@missing=""; for p in $(K8S_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  made=""; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made=1; fi; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; }; rc=$$?; \
	  if [ -n "$$made" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc; fi

image: k8s-deps
	k8stest/image.sh $(IMAGE_DIR) $(IMAGE_TAG) $(IMAGE_VERSION)

k8s-bins: $(K8S_BIN)/.built $(K8S_BIN)/pause

# One go build for all five commands, so that the packages they share are
# compiled once; -trimpath, stripped, two compilers at a time, niced.
$(K8S_BIN)/.built: k8stest/kube/go.mod k8stest/kube/go.sum
	@mkdir -p $(K8S_BIN)
	@echo "building Kubernetes $(K8S_VERSION) ($(K8S_CMDS)): 20-40 minutes on two cores the first time"
	$(K8S_GO) build -buildvcs=false -trimpath -ldflags '$(K8S_LDFLAGS)' \
	  -o $(abspath $(K8S_BIN))/ $(addprefix k8s.io/kubernetes/cmd/,$(K8S_CMDS))
	@touch $@

# The sandbox ("pause") image's binary, from the same Kubernetes source:
# no registry to pull registry.k8s.io/pause from.
$(K8S_BIN)/pause: k8stest/kube/go.mod | k8s-deps
	@mkdir -p $(K8S_BIN)
	src=$$($(K8S_GO) list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c && \
	gcc -static -O2 -DVERSION=$(K8S_VERSION) -o $@ "$$src" && strip $@

# The hub's server, from the module's own dependency.
$(K8S_BIN)/nats-server: go.mod go.sum
	@mkdir -p $(K8S_BIN)
	CGO_ENABLED=0 go build -trimpath -o $@ github.com/nats-io/nats-server/v2

k8s-test: k8s-deps k8s-bins image $(K8S_BIN)/nats-server
	go vet -tags k8s ./k8stest ./internal/k8scluster
	K8STEST_BIN=$(abspath $(K8S_BIN)) K8STEST_STATE=$(abspath $(K8S_DIR))/state \
	K8STEST_NATS_SERVER=$(abspath $(K8S_BIN))/nats-server \
	K8STEST_IMAGE_OCI=$(abspath $(IMAGE_DIR))/oci K8STEST_IMAGE_TAR=$(abspath $(IMAGE_DIR))/genlbridge.tar \
	K8STEST_LOGS=$(abspath $(K8S_DIR))/logs \
	go test -tags k8s -count=1 -v -timeout $(K8S_TIMEOUT) $(if $(K8S_RUN),-run '$(K8S_RUN)') ./k8stest

k8s-clean:
	rm -rf $(K8S_DIR) $(IMAGE_DIR)

.DEFAULT_GOAL := $(_k8s_saved_default_goal)
