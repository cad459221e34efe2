//go:build tools

// Package tools pins containerd v2.4.2 (daemon, runc shim, ctr) for the real-node tier.
// kubelet v1.36 needs containerd 2.x: 1.35 was the last release for containerd 1.x.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
