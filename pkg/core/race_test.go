package core_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/bootchain"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
)

var raceReportTokRe = regexp.MustCompile(`report\?mac=[0-9a-f:]+&token=([A-Za-z0-9_-]+)`)

// A render racing a reprovision must never leave the earlier install's keys
// to the new one: every render either fails (the machine changed under it)
// or is for one generation, and the new generation's keys are its own.
func TestRenderRacingReprovision(t *testing.T) {
	s := k8sLab(t)
	ctx := context.Background()
	mac := k8sWorker1
	for i := 0; i < 60; i++ {
		var wg sync.WaitGroup
		var raw []byte
		wg.Add(2)
		// A base URL of its own each round, so no kept config is reused.
		go func() { defer wg.Done(); raw, _ = s.RenderIgnition(ctx, mac, fmt.Sprintf("http://r%d", i)) }()
		go func() {
			defer wg.Done()
			if _, err := s.Reprovision(ctx, mac); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		final, err := s.RenderIgnition(ctx, mac, "http://final")
		if err != nil {
			t.Fatal(err)
		}
		if raw == nil {
			continue // the render saw the machine change and refused
		}
		r, f := raceDecode(t, raw), raceDecode(t, final)
		rTok := raceReportTokRe.FindSubmatch(r.files[model.ReportEnvPath].data)
		fTok := raceReportTokRe.FindSubmatch(f.files[model.ReportEnvPath].data)
		if rTok == nil || fTok == nil {
			t.Fatal("no report URL in a rendered config")
		}
		if bytes.Equal(rTok[1], fTok[1]) {
			continue // both for the new generation
		}
		rs, fs := k8sSSLFiles(r), k8sSSLFiles(f)
		for p, b := range fs {
			if bytes.Equal(rs[p], b) && bytes.Contains(b, []byte("PRIVATE KEY")) {
				t.Fatalf("round %d: the new install kept %s from a render of the earlier install", i, p)
			}
		}
	}
}

// A machine removed while its certificates are being issued keeps none.
func TestRenderRacingRemove(t *testing.T) {
	for i := 0; i < 30; i++ {
		s := k8sLab(t)
		ctx := context.Background()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = s.RenderIgnition(ctx, k8sWorker1, "http://x") }()
		go func() {
			defer wg.Done()
			if err := s.RemoveMachine(ctx, k8sWorker1); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		certs, err := s.Certs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			if c.MAC == k8sWorker1 {
				t.Fatalf("round %d: removed machine's %s certificate is still stored", i, c.Name)
			}
		}
	}
}

// A MAC removed and added again continues its install generations, so the
// earlier install's tokens stay dead.
func TestReaddKeepsTokensDead(t *testing.T) {
	s := k8sLab(t)
	ctx := context.Background()
	cfg, err := s.RenderIgnition(ctx, k8sWorker1, "http://x")
	if err != nil {
		t.Fatal(err)
	}
	tok := raceReportTokRe.FindSubmatch(raceDecode(t, cfg).files[model.ReportEnvPath].data)
	m, err := s.Machine(ctx, k8sWorker1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMachine(ctx, k8sWorker1); err != nil {
		t.Fatal(err)
	}
	m.Generation, m.State = 0, ""
	if _, err := s.AddMachines(ctx, []model.Machine{m}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Report(ctx, bootchain.BootRequest{MAC: k8sWorker1, Token: string(tok[1])}, model.ReportBooted, "")
	if fault.KindOf(err) != fault.KindDenied {
		t.Fatalf("the earlier install's report token on the re-added machine: %v, want denied", err)
	}
}

func raceDecode(t *testing.T, raw []byte) *k8sNode {
	t.Helper()
	n, err := k8sDecode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// With the recorder running, Observe is queued; after a flush a discovered
// machine exists with what its firmware said, and an unknown MAC without
// discover leaves nothing behind.
func TestObserveQueued(t *testing.T) {
	s := k8sLab(t)
	s.StartRecorder(nil)
	t.Cleanup(s.Close)
	ctx := context.Background()
	fw := model.Firmware{Arch: "efi-x86_64", UUID: "44332211-6655-8847-99aa-bbccddeeff00", VendorClass: "PXEClient:Arch:00007"}
	if err := s.Observe(ctx, "52-54-00-00-09-01", fw, model.Event{Type: model.StateDHCP}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Observe(ctx, "52:54:00:00:09:02", fw, model.Event{Type: model.StateDHCP}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Observe(ctx, k8sWorker1, fw, model.Event{Type: model.StateDHCP}, false); err != nil {
		t.Fatal(err)
	}
	m, err := s.Machine(ctx, "52:54:00:00:09:01")
	if err != nil {
		t.Fatal(err)
	}
	// discovered, then its DHCP step: the state moves on to dhcp.
	if m.State != model.StateDHCP || m.Profile != "" || m.Arch != fw.Arch || m.UUID != fw.UUID || m.EventNext != 2 {
		t.Errorf("discovered machine = %+v", m)
	}
	if evs, _ := s.MachineEvents(ctx, m.MAC); len(evs) != 2 || evs[0].Type != model.StateDiscovered {
		t.Errorf("discovered machine's history = %+v", evs)
	}
	if _, err := s.Machine(ctx, "52:54:00:00:09:02"); fault.KindOf(err) != fault.KindNotFound {
		t.Errorf("an unknown MAC without discover was stored: %v", err)
	}
	w, err := s.Machine(ctx, k8sWorker1)
	if err != nil {
		t.Fatal(err)
	}
	if w.State != model.StateDHCP || w.VendorClass != fw.VendorClass {
		t.Errorf("known machine after a queued observation = %+v", w)
	}
}
