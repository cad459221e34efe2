// Command fake-nvidia-device-plugin advertises MIG devices to a real kubelet through the
// device plugin API (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1), the way NVIDIA's
// k8s-device-plugin does on a node with the `mixed` MIG strategy: one resource per
// profile (nvidia.com/mig-1g.10gb, ...), device IDs `MIG-<uuid>`, and on Allocate the
// container gets NVIDIA_VISIBLE_DEVICES set to the allocated IDs
// (NVIDIA/k8s-device-plugin internal/plugin/server.go, getAllocateResponse with the
// default envvar device-list strategy). There is no GPU behind the IDs.
//
// Usage:
//
//	fake-nvidia-device-plugin --socket-dir /var/lib/kubelet/device-plugins \
//	    --resource nvidia.com/mig-1g.10gb=3 --resource nvidia.com/mig-3g.40gb=1
//
// One gRPC server (one socket) per resource, registered with the kubelet. When the
// kubelet restarts it deletes the plugin sockets; the plugin then serves and registers
// again, as NVIDIA's plugin does.
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type resourceFlags []string

func (r *resourceFlags) String() string     { return strings.Join(*r, ",") }
func (r *resourceFlags) Set(v string) error { *r = append(*r, v); return nil }

// migUUID is a stable, UUID-shaped ID per (node, resource, index), so a restarted plugin
// advertises the same devices and the kubelet's checkpoint of allocations stays valid.
func migUUID(node, resource string, index int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", node, resource, index)))
	h := fmt.Sprintf("%x", sum[:16])
	return fmt.Sprintf("MIG-%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	resource string
	devices  []*pluginapi.Device
	socket   string
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		log.Printf("%s: allocate %v", p.resource, c.DevicesIds)
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(c.DevicesIds, ",")},
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

// serve listens on the plugin's socket and registers it with the kubelet; it returns the
// server so the caller can stop it when the kubelet goes away.
func (p *plugin) serve(socketDir string) (*grpc.Server, error) {
	_ = os.Remove(p.socket)
	listener, err := net.Listen("unix", p.socket)
	if err != nil {
		return nil, err
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, p)
	go func() { _ = server.Serve(listener) }()

	conn, err := grpc.NewClient("unix://"+filepath.Join(socketDir, "kubelet.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		server.Stop()
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	if err != nil {
		server.Stop()
		return nil, fmt.Errorf("register %s: %w", p.resource, err)
	}
	log.Printf("%s: registered %d devices", p.resource, len(p.devices))
	return server, nil
}

// run keeps the plugin served and registered: whenever its socket disappears (the
// kubelet removes plugin sockets when it restarts) it serves and registers again.
func (p *plugin) run(socketDir string, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	var server *grpc.Server
	for {
		if server == nil {
			s, err := p.serve(socketDir)
			if err != nil {
				log.Printf("%s: %v (retrying)", p.resource, err)
			} else {
				server = s
			}
		} else if _, err := os.Stat(p.socket); err != nil {
			log.Printf("%s: socket gone (kubelet restarted?); registering again", p.resource)
			server.Stop()
			server = nil
			continue
		}
		select {
		case <-stop:
			if server != nil {
				server.Stop()
			}
			_ = os.Remove(p.socket)
			return
		case <-time.After(time.Second):
		}
	}
}

func main() {
	var resources resourceFlags
	socketDir := flag.String("socket-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugins directory")
	node := flag.String("node-name", "node", "node name, mixed into the device IDs")
	flag.Var(&resources, "resource", "NAME=COUNT, e.g. nvidia.com/mig-1g.10gb=3 (repeatable)")
	flag.Parse()
	if len(resources) == 0 {
		log.Fatal("at least one --resource NAME=COUNT is required")
	}

	var plugins []*plugin
	for i, r := range resources {
		name, countText, ok := strings.Cut(r, "=")
		count, err := strconv.Atoi(countText)
		if !ok || err != nil || count < 0 || !strings.Contains(name, "/") {
			log.Fatalf("--resource %q: want NAME=COUNT, e.g. nvidia.com/mig-1g.10gb=3", r)
		}
		p := &plugin{resource: name, socket: filepath.Join(*socketDir, fmt.Sprintf("fake-nvidia-%d.sock", i))}
		for d := 0; d < count; d++ {
			p.devices = append(p.devices, &pluginapi.Device{ID: migUUID(*node, name, d), Health: pluginapi.Healthy})
		}
		plugins = append(plugins, p)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range plugins {
		wg.Add(1)
		go p.run(*socketDir, stop, &wg)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
	close(stop)
	wg.Wait()
}
