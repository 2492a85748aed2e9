package dhcp

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// runProxyClient is a PXE client that already has an address from another
// DHCP server (10.77.0.50): it broadcasts a DISCOVER to port 67, then asks
// the boot server on port 4011, as PXE ROMs do, and prints both answers.
func runProxyClient() int {
	iface := os.Getenv("IFACE")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
	}
	if err == nil {
		err = unix.BindToDevice(fd, iface)
	}
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: ClientPort})
	}
	if err != nil {
		fmt.Println("client socket:", err)
		return 2
	}
	f := os.NewFile(uintptr(fd), "client")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		fmt.Println("client socket:", err)
		return 2
	}
	conn := pc.(*net.UDPConn)
	hw, _ := net.ParseMAC("52:54:00:aa:00:01")
	exchange := func(to *net.UDPAddr, mods ...dhcpv4.Modifier) {
		base := []dhcpv4.Modifier{dhcpv4.WithHwAddr(hw),
			dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 7}),
			dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, []byte(vcUEFI))}
		req, _ := dhcpv4.New(append(base, mods...)...)
		if _, err := conn.WriteToUDP(req.ToBytes(), to); err != nil {
			fmt.Println("send:", err)
			return
		}
		buf := make([]byte, 1500)
		for {
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				fmt.Println("no answer:", err)
				return
			}
			r, err := dhcpv4.FromBytes(buf[:n])
			if err != nil || r.OpCode != dhcpv4.OpcodeBootReply || r.TransactionID != req.TransactionID {
				continue // our own broadcast, or another exchange
			}
			fmt.Printf("%s from %s yiaddr=%s siaddr=%s file=%s opt60=%s opt43=%x\n", r.MessageType(), from.IP, r.YourIPAddr,
				r.ServerIPAddr, r.BootFileName, r.ClassIdentifier(), r.Options.Get(dhcpv4.OptionVendorSpecificInformation))
			return
		}
	}
	exchange(&net.UDPAddr{IP: net.IPv4bcast, Port: ServerPort}, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithBroadcast(true))
	exchange(&net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: ProxyBootPort}, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 50)))
	return 0
}

// TestIntegrationProxy: in proxy mode bootsrv answers a PXE client's
// broadcast DISCOVER with boot information only (no address, PXEClient,
// discovery control), and its REQUEST on port 4011 with the boot file.
func TestIntegrationProxy(t *testing.T) {
	need(t, "ip")
	l := newLab(t, "x")
	run(t, "ip", "-n", l.cliNS, "addr", "add", "10.77.0.50/24", "dev", l.cliIf)
	l.setMAC("52:54:00:aa:00:01")
	if err := l.startServer("MODE=proxy", "UNKNOWN=ignore"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.cliNS, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=client", "IFACE="+l.cliIf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{
		"OFFER from 10.77.0.1 yiaddr=0.0.0.0 siaddr=10.77.0.1 file=ipxe.efi opt60=PXEClient opt43=060108ff",
		"ACK from 10.77.0.1 yiaddr=0.0.0.0 siaddr=10.77.0.1 file=ipxe.efi opt60=PXEClient opt43=060108ff",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("client saw:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	l.stopServer()
}
