// Command node-volumes provisions the test node's PersistentVolumes: for
// every pending claim of its StorageClass it makes a directory on this host
// and a `local` PersistentVolume bound to the claim (so the kubelet applies
// the pod's fsGroup, as on a real disk), and when such a volume is released
// it deletes the directory and the volume. One node, one host: the test
// cluster of hack/cluster (node.sh starts it beside the kubelet).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const provisionedBy = "pv.kubernetes.io/provisioned-by"

type provisioner struct {
	client kubernetes.Interface
	name   string // the StorageClass's provisioner
	class  string
	node   string
	root   string
}

func main() {
	var p provisioner
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of a user that may manage PersistentVolumes")
	flag.StringVar(&p.name, "provisioner", "storefront.dev/node-volumes", "the provisioner name the StorageClass gives")
	flag.StringVar(&p.class, "storage-class", "standard", "the StorageClass whose claims are served")
	flag.StringVar(&p.node, "node", "", "the node the volumes live on")
	flag.StringVar(&p.root, "root", "", "the directory that holds one directory per volume")
	interval := flag.Duration("interval", time.Second, "how often claims and volumes are looked at")
	flag.Parse()
	if *kubeconfig == "" || p.node == "" || p.root == "" {
		log.Fatal("--kubeconfig, --node and --root are required")
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	if p.client, err = kubernetes.NewForConfig(config); err != nil {
		log.Fatalf("client: %v", err)
	}
	if err := os.MkdirAll(p.root, 0o755); err != nil {
		log.Fatalf("root: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Printf("serving claims of StorageClass %s on node %s from %s", p.class, p.node, p.root)
	for {
		if err := p.pass(ctx); err != nil && ctx.Err() == nil {
			log.Printf("pass: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*interval):
		}
	}
}

// pass provisions every pending claim and reclaims every released volume.
func (p *provisioner) pass(ctx context.Context) error {
	claims, err := p.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list claims: %w", err)
	}
	for i := range claims.Items {
		claim := &claims.Items[i]
		if claim.Status.Phase == corev1.ClaimPending && claim.Spec.VolumeName == "" &&
			claim.DeletionTimestamp == nil && claim.Spec.StorageClassName != nil && *claim.Spec.StorageClassName == p.class {
			if err := p.provision(ctx, claim); err != nil {
				log.Printf("claim %s/%s: %v", claim.Namespace, claim.Name, err)
			}
		}
	}
	volumes, err := p.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	for i := range volumes.Items {
		volume := &volumes.Items[i]
		released := volume.Status.Phase == corev1.VolumeReleased || volume.Status.Phase == corev1.VolumeFailed
		if volume.Annotations[provisionedBy] == p.name && released &&
			volume.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
			if err := p.reclaim(ctx, volume); err != nil {
				log.Printf("volume %s: %v", volume.Name, err)
			}
		}
	}
	return nil
}

func (p *provisioner) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	name := "pvc-" + string(claim.UID)
	path := filepath.Join(p.root, name)
	// World-writable like a fresh disk's root as a pod sees it after fsGroup:
	// the stores run as their own non-root users.
	if err := os.MkdirAll(path, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(path, 0o777); err != nil {
		return err
	}
	size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return fmt.Errorf("the claim requests no storage size")
	}
	volume := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{provisionedBy: p.name},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              p.class,
			VolumeMode:                    claim.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind:       "PersistentVolumeClaim",
				APIVersion: "v1",
				Namespace:  claim.Namespace,
				Name:       claim.Name,
				UID:        claim.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: path},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{p.node},
				}}}},
			}},
		},
	}
	if _, err := p.client.CoreV1().PersistentVolumes().Create(ctx, volume, metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	log.Printf("provisioned %s (%s) for %s/%s at %s", name, size.String(), claim.Namespace, claim.Name, path)
	return nil
}

func (p *provisioner) reclaim(ctx context.Context, volume *corev1.PersistentVolume) error {
	if volume.Spec.Local != nil {
		path := filepath.Clean(volume.Spec.Local.Path)
		// Only ever a directory this provisioner made.
		if !strings.HasPrefix(path, filepath.Clean(p.root)+string(filepath.Separator)) {
			return fmt.Errorf("refusing to delete %s: not under %s", path, p.root)
		}
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, volume.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	log.Printf("reclaimed %s", volume.Name)
	return nil
}
