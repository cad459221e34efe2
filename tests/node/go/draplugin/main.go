// Command fake-nvidia-dra-plugin is a DRA kubelet plugin for driver `gpu.nvidia.com` that
// publishes MIG devices the way NVIDIA's DRA driver does, with no GPU behind them, for
// gpu-rightsizer's real-node tier (tests/node/test_dra_on_node.py).
//
// What it relies on:
//
//   - k8s.io/dynamic-resource-allocation/kubeletplugin v0.36.3 (the helper for writing a DRA
//     kubelet plugin, matching Kubernetes v1.36.3): Start registers the plugin with the
//     kubelet through its plugin registry directory and serves the DRA gRPC service
//     (NodePrepareResources / NodeUnprepareResources, which it turns into
//     PrepareResourceClaims / UnprepareResourceClaims); Helper.PublishResources keeps this
//     node's ResourceSlice(s) equal to what is given (package resourceslice).
//   - The ResourceSlice shape of NVIDIA's DRA driver, kubernetes-sigs/dra-driver-nvidia-gpu
//     (site/content/docs/reference/resourceslice-attributes.md, "MIG slice (type: mig)";
//     cmd/gpu-kubelet-plugin/mig.go CommonAttributesMig, CommonCapacitiesMig,
//     MigSpecTuple.ToCanonicalName; deviceinfo.go MigDeviceInfo.GetDevice): one pool per
//     node, named after the node; per MIG device the name
//     gpu-<parent minor>-mig-<profile without dots>-<profile ID>-<placement start>, the
//     attributes type=mig, uuid, parentUUID, profile, productName, brand, architecture,
//     cudaComputeCapability, driverVersion, cudaDriverVersion and
//     resource.kubernetes.io/pciBusID, and the capacities memory (the profile's
//     MemorySizeMB x 2^20 bytes), multiprocessors, copyEngines, decoders, encoders,
//     jpegEngines, ofaEngines and memorySlice<i> for each memory slice it spans.
//   - The driver's CDI handling (cmd/gpu-kubelet-plugin/cdi.go): per claim one transient
//     CDI spec of kind k8s.gpu.nvidia.com/claim named <vendor>-<class>_<claim UID>, with
//     one device <claim UID>-<device name> per allocated device, written into the CDI spec
//     directory the container runtime reads (/var/run/cdi by default; containerd 2.x's
//     `cdi_spec_dirs` is ["/etc/cdi", "/var/run/cdi"] and CDI is always on), and the
//     qualified CDI device names returned from NodePrepareResources. The real driver's
//     spec injects the GPU's device nodes and driver libraries; with no GPU here, this
//     one sets NVIDIA_VISIBLE_DEVICES=<MIG UUID> (what the NVIDIA container toolkit reads
//     to pick a device), so a test can see from inside the container which device it got.
//
// Usage:
//
//	fake-nvidia-dra-plugin --kubeconfig K --node-name N --kubelet-dir /var/lib/kubelet \
//	    --cdi-dir /var/run/cdi --mig 1g.10gb@0 --mig 1g.10gb@1 --mig 3g.40gb@4
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	driverName    = "gpu.nvidia.com"
	cdiVendor     = "k8s." + driverName // as the driver's cdi.go: cdiVendor = "k8s." + DriverName
	cdiClass      = "claim"
	cdiKind       = cdiVendor + "/" + cdiClass
	cdiVersion    = "0.6.0"
	productName   = "NVIDIA H100 80GB HBM3" // NVML's name for the GPU GFD labels NVIDIA-H100-80GB-HBM3
	architecture  = "Hopper"
	brand         = "Nvidia"
	computeCap    = "9.0.0"
	driverVersion = "580.159.4" // 580.159.04 (shared/mig-profiles) as a semantic version
	cudaVersion   = "13.0.0"
	parentMinor   = 0
	pciBusID      = "0000:65:00.0"
)

// profileInfo is what NVML reports for one H100 80GB GPU instance profile
// (../shared/mig-profiles/h100-80gb-hbm3.txt: `nvidia-smi mig -lgip`, `-lgipp` and
// nvmlDeviceGetGpuInstanceProfileInfo on driver 580.159.04).
type profileInfo struct {
	id, memoryMiB, sms, copyEngines, decoders, encoders, jpeg, ofa int64
	memorySlices                                                   int64
	placements                                                     []int64
}

var h100 = map[string]profileInfo{
	"1g.10gb": {id: 19, memoryMiB: 9984, sms: 16, copyEngines: 1, decoders: 1, encoders: 0, jpeg: 1, ofa: 0, memorySlices: 1, placements: []int64{0, 1, 2, 3, 4, 5, 6}},
	"1g.20gb": {id: 15, memoryMiB: 20096, sms: 26, copyEngines: 1, decoders: 1, encoders: 0, jpeg: 1, ofa: 0, memorySlices: 2, placements: []int64{0, 2, 4, 6}},
	"2g.20gb": {id: 14, memoryMiB: 20096, sms: 32, copyEngines: 2, decoders: 2, encoders: 0, jpeg: 2, ofa: 0, memorySlices: 2, placements: []int64{0, 2, 4}},
	"3g.40gb": {id: 9, memoryMiB: 40448, sms: 60, copyEngines: 3, decoders: 3, encoders: 0, jpeg: 3, ofa: 0, memorySlices: 4, placements: []int64{0, 4}},
	"4g.40gb": {id: 5, memoryMiB: 40448, sms: 64, copyEngines: 4, decoders: 4, encoders: 0, jpeg: 4, ofa: 0, memorySlices: 4, placements: []int64{0}},
	"7g.80gb": {id: 0, memoryMiB: 81152, sms: 132, copyEngines: 8, decoders: 7, encoders: 0, jpeg: 7, ofa: 1, memorySlices: 8, placements: []int64{0}},
}

// migDevice is one MIG device the plugin publishes.
type migDevice struct {
	name, profile, uuid string
	start               int64
}

// uuidFrom makes a stable, UUID-shaped ID, so a restarted plugin publishes the same devices.
func uuidFrom(prefix, seed string) string {
	sum := sha256.Sum256([]byte(seed))
	h := fmt.Sprintf("%x", sum[:16])
	return fmt.Sprintf("%s-%s-%s-%s-%s-%s", prefix, h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

func parseMig(node, spec string) (migDevice, error) {
	profile, startText, ok := strings.Cut(spec, "@")
	info, known := h100[profile]
	start, err := strconv.ParseInt(startText, 10, 64)
	if !ok || !known || err != nil {
		return migDevice{}, fmt.Errorf("--mig %q: want PROFILE@START with an H100 80GB profile, e.g. 1g.10gb@0", spec)
	}
	valid := false
	for _, p := range info.placements {
		valid = valid || p == start
	}
	if !valid {
		return migDevice{}, fmt.Errorf("--mig %q: %s may start only at %v", spec, profile, info.placements)
	}
	// MigSpecTuple.ToCanonicalName: dots dropped from the profile name.
	name := fmt.Sprintf("gpu-%d-mig-%s-%d-%d", parentMinor, strings.ReplaceAll(profile, ".", ""), info.id, start)
	return migDevice{name: name, profile: profile, start: start, uuid: uuidFrom("MIG", node+"/"+name)}, nil
}

func str(s string) resourceapi.DeviceAttribute {
	return resourceapi.DeviceAttribute{StringValue: ptr.To(s)}
}
func ver(s string) resourceapi.DeviceAttribute {
	return resourceapi.DeviceAttribute{VersionValue: ptr.To(s)}
}
func count(v int64) resourceapi.DeviceCapacity {
	return resourceapi.DeviceCapacity{Value: *resource.NewQuantity(v, resource.DecimalSI)}
}
func bytes(v int64) resourceapi.DeviceCapacity {
	return resourceapi.DeviceCapacity{Value: *resource.NewQuantity(v, resource.BinarySI)}
}

// device is the ResourceSlice entry of d, as the driver's MigDeviceInfo.GetDevice builds it.
func (d migDevice) device(parentUUID string) resourceapi.Device {
	info := h100[d.profile]
	capacity := map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
		"multiprocessors": count(info.sms),
		"copyEngines":     count(info.copyEngines),
		"decoders":        count(info.decoders),
		"encoders":        count(info.encoders),
		"jpegEngines":     count(info.jpeg),
		"ofaEngines":      count(info.ofa),
		"memory":          bytes(info.memoryMiB * 1024 * 1024),
	}
	for i := d.start; i < d.start+info.memorySlices; i++ {
		capacity[resourceapi.QualifiedName(fmt.Sprintf("memorySlice%d", i))] = bytes(1)
	}
	return resourceapi.Device{
		Name: d.name,
		Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
			"type":                            str("mig"),
			"uuid":                            str(d.uuid),
			"parentUUID":                      str(parentUUID),
			"profile":                         str(d.profile),
			"productName":                     str(productName),
			"brand":                           str(brand),
			"architecture":                    str(architecture),
			"cudaComputeCapability":           ver(computeCap),
			"driverVersion":                   ver(driverVersion),
			"cudaDriverVersion":               ver(cudaVersion),
			"resource.kubernetes.io/pciBusID": str(pciBusID),
		},
		Capacity: capacity,
	}
}

// driver implements kubeletplugin.DRAPlugin.
type driver struct {
	devices map[string]migDevice // by device name
	pool    string
	cdiDir  string
	cancel  context.CancelCauseFunc
	mu      sync.Mutex
}

func specPath(dir string, claim types.UID) string {
	// cdi.GenerateTransientSpecName(vendor, class, claimUID): "<vendor>-<class>_<uid>".
	return filepath.Join(dir, fmt.Sprintf("%s-%s_%s.json", cdiVendor, cdiClass, claim))
}

type cdiSpec struct {
	CDIVersion string      `json:"cdiVersion"`
	Kind       string      `json:"kind"`
	Devices    []cdiDevice `json:"devices"`
}

type cdiDevice struct {
	Name           string `json:"name"`
	ContainerEdits struct {
		Env []string `json:"env"`
	} `json:"containerEdits"`
}

func (d *driver) prepare(claim *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	if claim.Status.Allocation == nil {
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)}
	}
	spec := cdiSpec{CDIVersion: cdiVersion, Kind: cdiKind}
	var result kubeletplugin.PrepareResult
	for _, r := range claim.Status.Allocation.Devices.Results {
		if r.Driver != driverName {
			continue
		}
		dev, ok := d.devices[r.Device]
		if r.Pool != d.pool || !ok {
			return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s: device %s/%s is not one of ours", claim.Namespace, claim.Name, r.Pool, r.Device)}
		}
		cdiName := fmt.Sprintf("%s-%s", claim.UID, dev.name)
		entry := cdiDevice{Name: cdiName}
		entry.ContainerEdits.Env = []string{"NVIDIA_VISIBLE_DEVICES=" + dev.uuid}
		spec.Devices = append(spec.Devices, entry)
		result.Devices = append(result.Devices, kubeletplugin.Device{
			Requests:     []string{r.Request},
			PoolName:     r.Pool,
			DeviceName:   r.Device,
			CDIDeviceIDs: []string{cdiKind + "=" + cdiName},
		})
		klog.InfoS("prepare", "claim", klog.KObj(claim), "uid", claim.UID, "request", r.Request, "device", dev.name, "profile", dev.profile, "uuid", dev.uuid)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err == nil {
		path := specPath(d.cdiDir, claim.UID)
		// Written whole, then renamed: the runtime never reads half a spec.
		if err = os.WriteFile(path+".tmp", data, 0o644); err == nil {
			err = os.Rename(path+".tmp", path)
		}
	}
	if err != nil {
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("write CDI spec: %w", err)}
	}
	return result
}

func (d *driver) PrepareResourceClaims(_ context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		out[claim.UID] = d.prepare(claim)
	}
	return out, nil
}

func (d *driver) UnprepareResourceClaims(_ context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[types.UID]error, len(claims))
	for _, claim := range claims {
		err := os.Remove(specPath(d.cdiDir, claim.UID))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		out[claim.UID] = err
		klog.InfoS("unprepare", "claim", claim.NamespacedName, "uid", claim.UID)
	}
	return out, nil
}

func (d *driver) HandleError(ctx context.Context, err error, msg string) {
	klog.ErrorS(err, msg)
	if !errors.Is(err, kubeletplugin.ErrRecoverable) {
		d.cancel(fmt.Errorf("fatal background error: %w", err))
	}
}

type migFlags []string

func (m *migFlags) String() string     { return strings.Join(*m, ",") }
func (m *migFlags) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var migs migFlags
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	nodeName := flag.String("node-name", "", "this node's name (the pool and the ResourceSlice's nodeName)")
	kubeletDir := flag.String("kubelet-dir", "/var/lib/kubelet", "the kubelet's --root-dir (plugins_registry/ and plugins/ under it)")
	cdiDir := flag.String("cdi-dir", "/var/run/cdi", "where to write CDI specs (one of the container runtime's cdi_spec_dirs)")
	flag.Var(&migs, "mig", "PROFILE@START, a MIG device of the one H100 80GB GPU (repeatable)")
	flag.Parse()
	if *nodeName == "" || len(migs) == 0 {
		klog.Fatal("--node-name and at least one --mig PROFILE@START are required")
	}

	parentUUID := uuidFrom("GPU", *nodeName+"/gpu-0")
	d := &driver{devices: map[string]migDevice{}, pool: *nodeName, cdiDir: *cdiDir}
	var devices []resourceapi.Device
	for _, spec := range migs {
		m, err := parseMig(*nodeName, spec)
		if err != nil {
			klog.Fatal(err)
		}
		if _, dup := d.devices[m.name]; dup {
			klog.Fatalf("--mig %q given twice", spec)
		}
		d.devices[m.name] = m
		devices = append(devices, m.device(parentUUID))
	}
	// The driver sorts by canonical name; the scheduler tries devices in slice order.
	sort.Slice(devices, func(i, j int) bool { return devices[i].Name < devices[j].Name })

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	registry := filepath.Join(*kubeletDir, "plugins_registry")
	dataDir := filepath.Join(*kubeletDir, "plugins", driverName)
	for _, dir := range []string{registry, dataDir, *cdiDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			klog.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	d.cancel = cancel
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-signals; cancel(errors.New("signal")) }()

	helper, err := kubeletplugin.Start(ctx, d,
		kubeletplugin.DriverName(driverName),
		kubeletplugin.KubeClient(client),
		kubeletplugin.NodeName(*nodeName),
		kubeletplugin.RegistrarDirectoryPath(registry),
		kubeletplugin.PluginDataDirectoryPath(dataDir),
	)
	if err != nil {
		klog.Fatalf("start the kubelet plugin: %v", err)
	}
	err = helper.PublishResources(ctx, resourceslice.DriverResources{
		Pools: map[string]resourceslice.Pool{*nodeName: {Slices: []resourceslice.Slice{{Devices: devices}}}},
	})
	if err != nil {
		klog.Fatalf("publish: %v", err)
	}
	for _, dev := range devices {
		klog.InfoS("published", "device", dev.Name, "profile", *dev.Attributes["profile"].StringValue, "uuid", *dev.Attributes["uuid"].StringValue)
	}
	<-ctx.Done()
	klog.InfoS("stopping", "cause", context.Cause(ctx))
	// Stop unregisters from the kubelet; the ResourceSlices stay (the test deletes them).
	helper.Stop()
}
