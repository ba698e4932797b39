// Command lab-pause is the pod sandbox process of the lab's real node: it holds a pod's
// namespaces, reaps the orphans it inherits as PID 1 of a shared PID namespace, and exits 0 on
// SIGINT or SIGTERM, as Kubernetes' own pause does (kubernetes/kubernetes,
// build/pause/linux/pause.c). No registry can be reached here, so the lab builds it and packs
// it as an image (libresh_cli/lab/imagebuild.py).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for received := range signals {
		if received != syscall.SIGCHLD {
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
