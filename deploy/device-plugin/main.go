// Command servoscope-device-plugin hands a host's servo-bus character device (a Pololu Maestro's
// /dev/ttyACM0, say) to the one pod that asks for the extended resource servoscope.dev/maestro,
// without privilege: the kubelet adds the device to that container's device cgroup and creates
// its node, and nothing else on the node can open it.
//
// It speaks the kubelet's device-plugin API (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1):
// it serves the DevicePlugin service on a unix socket in the kubelet's device-plugins directory
// and registers that socket with the kubelet. Each configured device is one unit of the resource,
// healthy while its node exists and is a character device.
//
//	servoscope-device-plugin [-resource servoscope.dev/maestro] [-kubelet-dir DIR] -device HOST[:CONTAINER]...
//	servoscope-device-plugin check PATH   open PATH read-write, as the servo controller would
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	api "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// pollInterval is how often device health and the plugin's own socket are looked at.
const pollInterval = 2 * time.Second

type device struct{ id, hostPath, containerPath string }

type plugin struct {
	api.UnimplementedDevicePluginServer
	devices []device
}

func (p *plugin) GetDevicePluginOptions(context.Context, *api.Empty) (*api.DevicePluginOptions, error) {
	return &api.DevicePluginOptions{}, nil
}

// health lists every device with its current health.
func (p *plugin) health() []*api.Device {
	listed := make([]*api.Device, 0, len(p.devices))
	for _, d := range p.devices {
		state := api.Unhealthy
		if info, err := os.Stat(d.hostPath); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			state = api.Healthy
		}
		listed = append(listed, &api.Device{ID: d.id, Health: state})
	}
	return listed
}

// ListAndWatch sends the devices once, then again whenever a device's health changes.
func (p *plugin) ListAndWatch(_ *api.Empty, stream grpc.ServerStreamingServer[api.ListAndWatchResponse]) error {
	last := ""
	for {
		devices := p.health()
		if now := fmt.Sprint(devices); now != last {
			if err := stream.Send(&api.ListAndWatchResponse{Devices: devices}); err != nil {
				return err
			}
			last = now
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(pollInterval):
		}
	}
}

// Allocate gives each container the device nodes of the units the kubelet picked for it.
func (p *plugin) Allocate(_ context.Context, req *api.AllocateRequest) (*api.AllocateResponse, error) {
	resp := &api.AllocateResponse{}
	for _, container := range req.ContainerRequests {
		answer := &api.ContainerAllocateResponse{}
		for _, id := range container.DevicesIds {
			d, ok := p.byID(id)
			if !ok {
				return nil, fmt.Errorf("unknown device %q", id)
			}
			answer.Devices = append(answer.Devices, &api.DeviceSpec{
				HostPath: d.hostPath, ContainerPath: d.containerPath, Permissions: "rw",
			})
		}
		resp.ContainerResponses = append(resp.ContainerResponses, answer)
	}
	return resp, nil
}

func (p *plugin) byID(id string) (device, bool) {
	for _, d := range p.devices {
		if d.id == id {
			return d, true
		}
	}
	return device{}, false
}

// serve listens on the plugin's socket, registers it with the kubelet and returns when the socket
// is gone: the kubelet removes every plugin socket when it restarts, and a plugin must then
// register again (here: exit, and the DaemonSet starts a fresh one).
func serve(p *plugin, dir, resource string) error {
	socket := filepath.Join(dir, "servoscope-"+strings.ReplaceAll(resource, "/", "_")+".sock")
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	server := grpc.NewServer()
	api.RegisterDevicePluginServer(server, p)
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()

	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = api.NewRegistrationClient(conn).Register(ctx, &api.RegisterRequest{
		Version: api.Version, Endpoint: filepath.Base(socket), ResourceName: resource,
	})
	if err != nil {
		return fmt.Errorf("registering with the kubelet at %s: %w", dir, err)
	}
	log.Printf("registered %s with %d device(s) on %s", resource, len(p.devices), socket)
	for {
		time.Sleep(pollInterval)
		if _, err := os.Stat(socket); err != nil {
			return fmt.Errorf("socket %s removed (the kubelet restarted): register again", socket)
		}
	}
}

// parseDevices reads HOST[:CONTAINER] pairs; the container path defaults to the host path.
func parseDevices(specs []string) ([]device, error) {
	devices := make([]device, 0, len(specs))
	for _, spec := range specs {
		host, container, found := strings.Cut(spec, ":")
		if !found {
			container = host
		}
		if !filepath.IsAbs(host) || !filepath.IsAbs(container) {
			return nil, fmt.Errorf("device %q: give absolute paths, HOST[:CONTAINER]", spec)
		}
		devices = append(devices, device{id: filepath.Base(host), hostPath: host, containerPath: container})
	}
	return devices, nil
}

// check opens path read-write without blocking, the way the servo controller opens its port.
func check(path string) error {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	return syscall.Close(fd)
}

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	if len(os.Args) == 3 && os.Args[1] == "check" {
		if err := check(os.Args[2]); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("opened", os.Args[2])
		return
	}
	var specs repeated
	resource := flag.String("resource", "servoscope.dev/maestro", "extended resource name to advertise")
	dir := flag.String("kubelet-dir", api.DevicePluginPath, "the kubelet's device-plugins directory")
	flag.Var(&specs, "device", "HOST[:CONTAINER] path of a character device (repeatable)")
	flag.Parse()
	devices, err := parseDevices(specs)
	if err == nil && len(devices) == 0 {
		err = errors.New("no -device given: name the servo bus's character device, e.g. -device /dev/ttyACM0")
	}
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve(&plugin{devices: devices}, *dir, *resource))
}
