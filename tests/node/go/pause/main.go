// Command pause is the pod sandbox process of the real-node tier's sandbox image.
//
// No image registry is reachable from the test machines, so registry.k8s.io/pause
// cannot be pulled. This does what the upstream pause container does
// (kubernetes/build/pause/linux/pause.c): hold the pod's namespaces open, reap
// orphaned children (it is PID 1 of the pod when the PID namespace is shared) and
// exit on SIGINT or SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
