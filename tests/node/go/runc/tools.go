//go:build tools

// Package tools pins runc v1.5.3 for the real-node tier. Debian's runc 1.1.5 fails under
// containerd 2.4 ("can't get final child's PID from pipe: EOF").
package tools

import (
	_ "github.com/opencontainers/runc"
)
