package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
)

func machineCommand() *command {
	return &command{
		name:    "machine",
		summary: "Manage machines and watch their provisioning",
		subs: []*command{
			{
				name:    "add",
				args:    "MAC",
				summary: "Add one machine",
				long: `The MAC may be written AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or any case; it is
stored lower-case with colons. --iface is what flannel binds to
(FLANNELD_IFACE): an interface name or an IP (default: --ip).`,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.m.Profile, "profile", "", "profile name (required)")
					fs.StringVar(&o.m.Hostname, "hostname", "", "hostname, also the Kubernetes node name (required)")
					fs.StringVar(&o.m.IP, "ip", "", "the machine's IP on the provisioning network (required)")
					fs.StringVar(&o.m.Iface, "iface", "", "FLANNELD_IFACE: interface name or IP (default: --ip)")
					fs.StringVar(&o.m.BootFile, "boot-file", "", "override the first-stage boot file DHCP hands out")
					fs.Var(&o.labels, "label", "node label key=value (repeatable)")
					outputFlag(fs, o)
				},
				run: runMachineAdd,
			},
			{
				name:    "import",
				args:    "-f FILE",
				summary: "Add a whole rack from YAML or CSV, all or nothing",
				long: `CSV: a header line naming the columns mac, hostname, ip, profile and
optionally iface, labels (k=v;k2=v2), boot_file. YAML: a list of machines
(or "machines:" and the list) with the same fields, labels as a mapping.
Either every machine is stored or none is; an error names the file, line
and field.`,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.file, "f", "", "YAML or CSV file ('-' for stdin) (required)")
					outputFlag(fs, o)
				},
				run: runMachineImport,
			},
			{
				name:    "list",
				summary: "List machines with their state, last event and its age",
				flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
				run: withAPI(noArgs, func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
					ms, err := api.Machines(ctx)
					if err != nil {
						return err
					}
					model.SortMachines(ms)
					return printMachines(c.stdout, o.output, ms, time.Now())
				}),
			},
			{
				name:    "show",
				args:    "MAC|HOSTNAME",
				summary: "Show one machine and its whole history",
				flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
				run:     runMachineShow,
			},
			{
				name:    "events",
				args:    "MAC|HOSTNAME",
				summary: "Show a machine's event history",
				flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
				run: withAPI(exactly(1, "give exactly one MAC or hostname"), func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
					mac, err := machineRef(ctx, api, args[0])
					if err != nil {
						return err
					}
					evs, err := api.MachineEvents(ctx, mac)
					if err != nil {
						return err
					}
					if evs == nil {
						evs = []model.Event{}
					}
					now := time.Now()
					return emit(c.stdout, o.output, evs, func(tw *tabwriter.Writer) {
						row(tw, "TIME", "AGE", "EVENT", "DETAIL")
						for _, e := range evs {
							row(tw, e.Time.Format(time.RFC3339), age(e.Time, now), e.Type, eventDetail(e))
						}
					})
				}),
			},
			{
				name:    "reprovision",
				args:    "MAC|HOSTNAME",
				summary: "Install the machine again on its next network boot",
				long: `A provisioned machine is told to boot from its disk. This makes its next
network boot install it again, with new tokens and new certificates.`,
				flags: func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
				run: withAPI(exactly(1, "give exactly one MAC or hostname"), func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
					mac, err := machineRef(ctx, api, args[0])
					if err != nil {
						return err
					}
					m, err := api.Reprovision(ctx, mac)
					if err != nil {
						return err
					}
					return printMachines(c.stdout, o.output, []model.Machine{m}, time.Now())
				}),
			},
			{
				name:    "rm",
				args:    "MAC|HOSTNAME",
				summary: "Remove a machine and its history",
				run: withAPI(exactly(1, "give exactly one MAC or hostname"), func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
					mac, err := machineRef(ctx, api, args[0])
					if err != nil {
						return err
					}
					if err := api.RemoveMachine(ctx, mac); err != nil {
						return err
					}
					fmt.Fprintf(c.stdout, "machine %s removed\n", mac)
					return nil
				}),
			},
		},
	}
}

func runMachineAdd(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) != 1 {
		return usagef("give exactly one MAC or hostname")
	}
	m := o.m
	m.MAC = args[0]
	for _, l := range o.labels {
		k, v, err := model.ParseLabel(l)
		if err != nil {
			return err
		}
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		m.Labels[k] = v
	}
	var missing []string
	for _, f := range []struct{ name, val string }{{"--profile", m.Profile}, {"--hostname", m.Hostname}, {"--ip", m.IP}} {
		if f.val == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return usagef("%s required", strings.Join(missing, ", "))
	}
	api, done, err := openAPI(o)
	if err != nil {
		return err
	}
	defer done()
	ms, err := api.AddMachines(ctx, []model.Machine{m})
	if err != nil {
		return err
	}
	return printMachines(c.stdout, o.output, ms, time.Now())
}

func runMachineImport(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q: give the file with -f", args[0])
	}
	if o.file == "" {
		return usagef("-f FILE is required")
	}
	data, name, err := readInput(o.file)
	if err != nil {
		return err
	}
	ms, err := model.ParseMachinesFile(name, data)
	if err != nil {
		return err
	}
	api, done, err := openAPI(o)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	fmt.Fprintf(c.stderr, "importing %d machines from %s ...\n", len(ms), name)
	ms, err = api.AddMachines(ctx, ms)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "imported %d machines in one transaction (%s)\n", len(ms), time.Since(start).Round(time.Millisecond))
	return printMachines(c.stdout, o.output, ms, time.Now())
}

func runMachineShow(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) != 1 {
		return usagef("give exactly one MAC or hostname")
	}
	api, done, err := openAPI(o)
	if err != nil {
		return err
	}
	defer done()
	mac, err := machineRef(ctx, api, args[0])
	if err != nil {
		return err
	}
	m, err := api.Machine(ctx, mac)
	if err != nil {
		return err
	}
	evs, err := api.MachineEvents(ctx, m.MAC)
	if err != nil {
		return err
	}
	out := struct {
		model.Machine `yaml:",inline"`
		Events        []model.Event `json:"events" yaml:"events"`
	}{m, evs}
	if out.Events == nil {
		out.Events = []model.Event{}
	}
	now := time.Now()
	return emit(c.stdout, o.output, out, func(tw *tabwriter.Writer) {
		row(tw, "MAC", m.MAC)
		row(tw, "HOSTNAME", m.Hostname)
		row(tw, "IP", m.IP)
		row(tw, "IFACE", m.Iface)
		row(tw, "PROFILE", m.Profile)
		row(tw, "LABELS", labelString(m.Labels))
		row(tw, "STATE", m.State)
		row(tw, "ARCH", m.Arch)
		row(tw, "UUID", m.UUID)
		row(tw, "VENDOR CLASS", m.VendorClass)
		row(tw, "CREATED", m.CreatedAt.Format(time.RFC3339))
		fmt.Fprintln(tw)
		row(tw, "TIME", "AGE", "EVENT", "DETAIL")
		for _, e := range evs {
			row(tw, e.Time.Format(time.RFC3339), age(e.Time, now), e.Type, eventDetail(e))
		}
	})
}

func eventDetail(e model.Event) string {
	parts := []string{}
	if e.Detail != "" {
		parts = append(parts, e.Detail)
	}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+e.Fields[k])
	}
	return strings.Join(parts, " ")
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return strings.Join(keys, ",")
}

func printMachines(w io.Writer, format string, ms []model.Machine, now time.Time) error {
	if ms == nil {
		ms = []model.Machine{}
	}
	return emit(w, format, ms, func(tw *tabwriter.Writer) {
		row(tw, "MAC", "HOSTNAME", "IP", "PROFILE", "STATE", "LAST EVENT", "AGE")
		for _, m := range ms {
			row(tw, m.MAC, m.Hostname, m.IP, m.Profile, m.State, m.LastEvent, age(m.UpdatedAt, now))
		}
	})
}

func readAllStdin() ([]byte, error) { return io.ReadAll(os.Stdin) }

// machineRef turns what an operator typed into a machine's MAC: a MAC in
// any spelling as it is, otherwise the hostname of exactly one machine.
func machineRef(ctx context.Context, api admin.API, ref string) (string, error) {
	if mac, err := model.NormalizeMAC(ref); err == nil {
		return mac, nil
	}
	ms, err := api.Machines(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if strings.EqualFold(m.Hostname, ref) {
			return m.MAC, nil
		}
	}
	return "", &fault.Error{Kind: fault.KindInvalid, Msg: fmt.Sprintf(
		"%q is neither a MAC address nor a machine's hostname: give six hex pairs such as 52:54:00:12:34:56, or a hostname that bootsrv machine list shows", ref)}
}
