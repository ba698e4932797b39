// Command lab-addons holds what the libresh lab runs beside Kubernetes for its real node, chosen
// by the first argument:
//
//	coredns  the cluster's DNS: CoreDNS with only the plugins the lab's Corefile uses (bind,
//	         ready, errors, cache, kubernetes, forward), run out of cluster with a kubeconfig.
//	whoami   run inside a pod: asks the API server, through the `kubernetes` Service, who the
//	         pod's ServiceAccount token belongs to (a SelfSubjectReview), and prints the name;
//	         the lab's tests use it to prove that Services, the token and the CA work together.
//
// Its own module (not the control plane's): CoreDNS pins its own versions of shared modules,
// and a change here must not invalidate the control plane's build cache.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/coredns/coredns/coremain"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	// The CoreDNS plugins the lab's Corefile uses; each registers itself with CoreDNS.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lab-addons coredns [flags] | whoami")
		os.Exit(2)
	}
	os.Args = os.Args[1:]
	switch os.Args[0] {
	case "coredns":
		coremain.Run()
	case "whoami":
		os.Exit(whoami())
	default:
		fmt.Fprintf(os.Stderr, "lab-addons: unknown command %q\n", os.Args[0])
		os.Exit(2)
	}
}

// whoami uses client-go's in-cluster configuration: KUBERNETES_SERVICE_HOST and _PORT, and the
// token and CA the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount.
func whoami() int {
	config, err := rest.InClusterConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "whoami:", err)
		return 1
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "whoami:", err)
		return 1
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(
		context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "whoami:", err)
		return 1
	}
	fmt.Println(review.Status.UserInfo.Username)
	return 0
}
