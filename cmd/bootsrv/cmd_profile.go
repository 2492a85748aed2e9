package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/bootsrv/bootsrv/pkg/admin"
	"github.com/bootsrv/bootsrv/pkg/fault"
	"github.com/bootsrv/bootsrv/pkg/model"
)

func profileCommand() *command {
	return &command{
		name:    "profile",
		summary: "Manage profiles: what a class of machines boots and becomes",
		subs: []*command{
			{
				name:    "add",
				args:    "NAME | -f FILE",
				summary: "Add a profile from flags, or profiles from a YAML file",
				long: `A YAML file holds one profile, a list, several documents or a
"profiles:" list, with the fields name, role, os, kernel, initrds, args,
install, install_device and ignition (an Ignition config, spec 3.0-3.4, as
JSON text or YAML).

install is live (the default: diskless, every network boot runs the
config again) or disk (os flatcar or fcos: the live image installs the OS
to install_device, default /dev/sda, and later network boots are sent to
the disk).`,
				flags: func(fs *flag.FlagSet, o *opts) {
					fs.StringVar(&o.file, "f", "", "YAML file of profiles ('-' for stdin)")
					fs.StringVar(&o.pr.Role, "role", "", "master, worker or custom")
					fs.StringVar(&o.pr.OS, "os", "", "flatcar, fcos or custom (default flatcar)")
					fs.StringVar(&o.pr.Kernel, "kernel", "", "kernel URL or /assets/ path")
					fs.StringVar(&o.pr.Install, "install", "", "live (default: netboot every time) or disk (flatcar, fcos: install to --install-device)")
					fs.StringVar(&o.pr.InstallDevice, "install-device", "", "disk to install to with --install disk (default /dev/sda)")
					fs.Var(&o.initrds, "initrd", "initrd URL or /assets/ path (repeatable)")
					fs.Var(&o.kargs, "arg", "kernel argument (repeatable)")
					fs.StringVar(&o.ignFile, "ignition", "", "file with an Ignition snippet merged into the generated config")
					fs.BoolVar(&o.replace, "replace", false, "replace profiles of the same name")
					outputFlag(fs, o)
				},
				run: runProfileAdd,
			},
			{
				name:    "list",
				summary: "List profiles",
				flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
				run: withAPI(noArgs, func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
					ps, err := api.Profiles(ctx)
					if err != nil {
						return err
					}
					return printProfiles(c, o, ps)
				}),
			},
			{
				name:    "show",
				args:    "NAME",
				summary: "Show one profile",
				flags:   func(fs *flag.FlagSet, o *opts) { outputFlag(fs, o) },
				run: withAPI(exactly(1, "give exactly one profile name"), func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
					p, err := api.Profile(ctx, args[0])
					if err != nil {
						return err
					}
					return emit(c.stdout, o.output, p, func(tw *tabwriter.Writer) {
						row(tw, "NAME", p.Name)
						row(tw, "ROLE", p.Role)
						row(tw, "OS", p.OS)
						row(tw, "INSTALL", strings.TrimSpace(p.Install+" "+p.InstallDevice))
						row(tw, "KERNEL", p.Kernel)
						row(tw, "INITRDS", strings.Join(p.Initrds, " "))
						row(tw, "ARGS", strings.Join(p.Args, " "))
						row(tw, "IGNITION", p.Ignition)
					})
				}),
			},
			{
				name:    "rm",
				args:    "NAME",
				summary: "Remove a profile no machine uses",
				run: withAPI(exactly(1, "give exactly one profile name"), func(ctx context.Context, c *cli, o *opts, api admin.API, args []string) error {
					if err := api.RemoveProfile(ctx, args[0]); err != nil {
						return err
					}
					fmt.Fprintf(c.stdout, "profile %s removed\n", args[0])
					return nil
				}),
			},
		},
	}
}

func runProfileAdd(ctx context.Context, c *cli, o *opts, args []string) error {
	var ps []model.Profile
	switch {
	case o.file != "" && len(args) > 0:
		return usagef("give a NAME with flags, or -f FILE, not both")
	case o.file != "":
		if o.pr.Role != "" || o.pr.Kernel != "" || len(o.initrds) > 0 || len(o.kargs) > 0 || o.ignFile != "" || o.pr.OS != "" ||
			o.pr.Install != "" || o.pr.InstallDevice != "" {
			return usagef("-f FILE takes every field from the file: drop --role, --os, --kernel, --initrd, --arg, --install, --install-device, --ignition")
		}
		data, name, err := readInput(o.file)
		if err != nil {
			return err
		}
		if ps, err = model.ParseProfilesFile(name, data); err != nil {
			return err
		}
	case len(args) == 1:
		p := o.pr
		p.Name, p.Initrds, p.Args = args[0], o.initrds, o.kargs
		if o.ignFile != "" {
			b, err := os.ReadFile(o.ignFile)
			if err != nil {
				return &fault.Error{Kind: fault.KindInvalid, Msg: fmt.Sprintf("--ignition: %v", err)}
			}
			p.Ignition = string(b)
		}
		ps = []model.Profile{p}
	default:
		return usagef("give one profile NAME with flags, or -f FILE")
	}
	api, done, err := openAPI(o)
	if err != nil {
		return err
	}
	defer done()
	ps, err = api.AddProfiles(ctx, ps, o.replace)
	if err != nil {
		return err
	}
	return printProfiles(c, o, ps)
}

func printProfiles(c *cli, o *opts, ps []model.Profile) error {
	if ps == nil {
		ps = []model.Profile{}
	}
	return emit(c.stdout, o.output, ps, func(tw *tabwriter.Writer) {
		row(tw, "NAME", "ROLE", "OS", "INSTALL", "KERNEL", "INITRDS", "IGNITION")
		for _, p := range ps {
			ign := "no"
			if p.Ignition != "" {
				ign = "yes"
			}
			row(tw, p.Name, p.Role, p.OS, p.Install, p.Kernel, fmt.Sprint(len(p.Initrds)), ign)
		}
	})
}

// readInput reads a file named by a flag, '-' meaning stdin. Errors are
// input errors: the user named a file that cannot be read.
func readInput(name string) ([]byte, string, error) {
	if name == "-" {
		b, err := readAllStdin()
		return b, "<stdin>", err
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, name, &fault.Error{Kind: fault.KindInvalid, Msg: fmt.Sprintf("read %s: %v", name, err)}
	}
	return b, name, nil
}
