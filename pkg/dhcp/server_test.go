package dhcp

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootsrv/bootsrv/pkg/core"
	"github.com/bootsrv/bootsrv/pkg/lease"
	"github.com/bootsrv/bootsrv/pkg/model"
)

// TestRecordEvents: an OFFER followed by its ACK is one event on the
// machine; an OFFER nobody REQUESTs is written at shutdown (or after
// journey.HoldFor); an unknown client in discover mode becomes a
// discovered machine with what its firmware said.
func TestRecordEvents(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	svc := core.NewService(st, nil)
	ctx := context.Background()
	s, err := New(ctx, Config{Settings: *testSettings(ModeFull, UnknownDiscover)}, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	uuid := []byte{0, 0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x88, 0x47, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00}
	client := func(hw string, mt dhcpv4.MessageType) Client {
		req := pkt{hw: mustMAC(hw), mt: mt, arch: 7, vendor: vcUEFI}.build(t)
		req.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
		c, err := Inspect(req)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ip := netip.MustParseAddr("10.99.0.100")
	// A: DISCOVER twice, then REQUEST.
	a := "02:00:00:00:00:0a"
	s.record(client(a, dhcpv4.MessageTypeDiscover), Decision{IP: ip, Event: EventOffer, Discover: true}, "OFFER", true)
	s.record(client(a, dhcpv4.MessageTypeDiscover), Decision{IP: ip, Event: EventOffer, Discover: true}, "OFFER", true)
	s.record(client(a, dhcpv4.MessageTypeRequest), Decision{IP: ip, Event: model.StateDHCP, Discover: true}, "ACK", true)
	// B: DISCOVER only.
	b := "02:00:00:00:00:0b"
	s.record(client(b, dhcpv4.MessageTypeDiscover), Decision{IP: ip.Next(), Event: EventOffer, Discover: true}, "OFFER", true)
	// Closing the journal appends the offer still held for B.
	svc.Close()

	evA, err := svc.MachineEvents(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(evA) != 2 || evA[0].Type != model.StateDiscovered || evA[1].Type != model.StateDHCP ||
		evA[1].Fields["offers"] != "2" || evA[1].Fields["offer_ip"] != ip.String() || evA[1].Fields["offer_time"] == "" {
		t.Fatalf("A's events %+v", evA)
	}
	mA, _ := svc.Machine(ctx, a)
	if mA.State != model.StateDHCP || mA.Arch != "efi-x86_64" || mA.UUID != "11223344-5566-4788-99aa-bbccddeeff00" || mA.VendorClass != vcUEFI {
		t.Fatalf("A %+v", mA)
	}
	evB, err := svc.MachineEvents(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(evB) != 2 || evB[1].Type != EventOffer || !strings.Contains(evB[1].Fields["ip"], "10.99.0.101") {
		t.Fatalf("B's events %+v", evB)
	}
	mB, _ := svc.Machine(ctx, b)
	if mB.State != model.StateDiscovered {
		t.Fatalf("B state %s", mB.State)
	}
}

// TestServeOff: with no interface, or mode off, Serve returns at once and
// opens nothing.
func TestServeOff(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	svc := core.NewService(st, nil)
	for _, cfg := range []Config{{}, {Settings: Settings{Mode: ModeOff}, Interfaces: []string{"lo"}}} {
		if cfg.Enabled() {
			t.Fatalf("config %+v counts as enabled", cfg)
		}
		s, err := New(context.Background(), cfg, svc, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Serve(context.Background()); err != nil {
			t.Fatalf("Serve = %v", err)
		}
	}
	// Full mode on an interface needs the cluster's network, and a pool
	// inside it.
	ctx := context.Background()
	if _, err := New(ctx, Config{Interfaces: []string{"lo"}}, svc, nil); err == nil || !strings.Contains(err.Error(), "lease table") {
		t.Fatalf("New answering DHCP without a lease table: %v", err)
	}
	leases, err := lease.Open(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{Interfaces: []string{"lo"}}, svc, leases); err == nil || !strings.Contains(err.Error(), "cluster") {
		t.Fatalf("New without a cluster: %v", err)
	}
	if _, err := svc.ClusterInit(ctx, model.Cluster{Name: "c", APIServer: "10.99.0.1", Network: model.Network{Subnet: "10.99.0.0/24"}}); err != nil {
		t.Fatal(err)
	}
	bad, _ := ParseRange("10.98.0.10-10.98.0.20")
	if _, err := New(ctx, Config{Interfaces: []string{"lo"}, Pool: bad}, svc, leases); err == nil || !strings.Contains(err.Error(), "not inside subnet") {
		t.Fatalf("New with a pool outside the subnet: %v", err)
	}
	good, _ := ParseRange("10.99.0.100-10.99.0.199")
	s, err := New(ctx, Config{Interfaces: []string{"lo"}, Pool: good}, svc, leases)
	if err != nil || s.Settings().Subnets[0].Pool != good || s.Settings().Subnets[0].Prefix.String() != "10.99.0.0/24" {
		t.Fatalf("New: %v %+v", err, s.Settings())
	}
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}
