package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// relay speaks DHCP for every simulated machine as a relay agent would: one
// socket on giaddr:67, every request with giaddr set, every reply coming
// back to that socket and handed to the machine whose transaction it is.
// So thousands of MACs share one namespace and need no VMs or raw sockets.
type relay struct {
	conn   *net.UDPConn
	giaddr netip.Addr
	server *net.UDPAddr

	mu      sync.Mutex
	waiting map[uint32]chan *dhcpv4.DHCPv4
}

func newRelay(giaddr, server netip.Addr) (*relay, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(giaddr, 67)))
	if err != nil {
		return nil, fmt.Errorf("relay socket on %s:67: %w", giaddr, err)
	}
	// Thousands of machines answered at once: a deep receive queue.
	c.SetReadBuffer(8 << 20)
	c.SetWriteBuffer(8 << 20)
	r := &relay{conn: c, giaddr: giaddr, server: net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 67)),
		waiting: map[uint32]chan *dhcpv4.DHCPv4{}}
	go r.read()
	return r, nil
}

func (r *relay) Close() error { return r.conn.Close() }

func (r *relay) read() {
	buf := make([]byte, 1500)
	for {
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		xid := xidOf(m.TransactionID)
		r.mu.Lock()
		ch := r.waiting[xid]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default: // a duplicate reply nobody waits for
			}
		}
	}
}

func xidOf(x dhcpv4.TransactionID) uint32 {
	return uint32(x[0])<<24 | uint32(x[1])<<16 | uint32(x[2])<<8 | uint32(x[3])
}

// firmware is what a machine's DHCP client says about itself: the PXE ROM
// (option 60 PXEClient, arch 7 = x86-64 UEFI) or iPXE (user class iPXE).
type firmware int

const (
	pxeROM firmware = iota
	ipxeFW
)

var errNAK = errors.New("dhcp-nak")

// dora is one DISCOVER-OFFER-REQUEST-ACK for mac, retransmitting each
// message as firmware does (after 1, 2, 4, 8 s) until ctx ends.
func (r *relay) dora(ctx context.Context, mac net.HardwareAddr, fw firmware) (*dhcpv4.DHCPv4, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithRelay(r.giaddr.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 16})),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName, dhcpv4.OptionVendorSpecificInformation),
	}
	switch fw {
	case pxeROM:
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")))
	case ipxeFW:
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003010")),
			dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{19, 1, 1})))
	}
	disc, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		return nil, err
	}
	offer, err := r.exchange(ctx, disc, dhcpv4.MessageTypeOffer)
	if err != nil {
		return nil, err
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		return nil, err
	}
	req.TransactionID = disc.TransactionID
	return r.exchange(ctx, req, dhcpv4.MessageTypeAck)
}

// exchange sends m until a reply of type want (or a NAK) comes.
func (r *relay) exchange(ctx context.Context, m *dhcpv4.DHCPv4, want dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	xid := xidOf(m.TransactionID)
	ch := make(chan *dhcpv4.DHCPv4, 4)
	r.mu.Lock()
	r.waiting[xid] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, xid)
		r.mu.Unlock()
	}()
	raw := m.ToBytes()
	wait := time.Second
	for {
		if _, err := r.conn.WriteToUDP(raw, r.server); err != nil {
			return nil, fmt.Errorf("dhcp-send: %w", err)
		}
		t := time.NewTimer(wait)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("dhcp-timeout: no %s", want)
			case <-t.C:
				waiting = false
			case rep := <-ch:
				switch rep.MessageType() {
				case want:
					t.Stop()
					return rep, nil
				case dhcpv4.MessageTypeNak:
					t.Stop()
					return nil, errNAK
				}
				// A late reply to the previous message: keep waiting.
			}
		}
		if wait < 8*time.Second {
			wait *= 2
		}
	}
}
