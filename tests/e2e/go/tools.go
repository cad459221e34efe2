//go:build tools

// Package tools pins the control-plane binaries the end-to-end suite builds.
// Nothing imports this package; it exists so `go mod tidy` records every
// dependency of the real kube-apiserver, scheduler, controller-manager,
// kubectl and etcd at the versions the suite runs against, and of the kubelet and
// kube-proxy the real-node tier (tests/node) runs.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
