package noderun

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in        string
		cunescape bool
		want      []string
		wantErr   string
	}{
		{in: "/opt/bin/etcd", cunescape: true, want: []string{"/opt/bin/etcd"}},
		{in: "  /bin/a    --x=1   --y=2  ", cunescape: true, want: []string{"/bin/a", "--x=1", "--y=2"}},
		{in: `/bin/echo "a b" 'c "d"' e"f g"h ""`, cunescape: true, want: []string{"/bin/echo", "a b", `c "d"`, "ef gh", ""}},
		{in: `/bin/echo a\ b \"q\" \x41\102\u00e9 tab\tx`, cunescape: true, want: []string{"/bin/echo", "a b", `"q"`, "ABé", "tab\tx"}},
		{in: `/bin/echo "a\nb"`, cunescape: true, want: []string{"/bin/echo", "a\nb"}},
		{in: `/bin/echo \q`, cunescape: true, wantErr: `unknown escape \q`},
		{in: `/bin/echo "open`, cunescape: true, wantErr: "unterminated"},
		{in: `/bin/echo \x4`, cunescape: true, wantErr: "short escape"},
		// A "$NAME" value: quotes group, a backslash keeps the next byte.
		{in: `--a=1 "--b=2 3" \q`, want: []string{"--a=1", "--b=2 3", "q"}},
	}
	for _, tt := range tests {
		got, err := splitWords(tt.in, tt.cunescape, false)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("splitWords(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("splitWords(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpandWords(t *testing.T) {
	vars := map[string]string{"FOO": "BAR BAR", "BAR": "waldo", "OPTS": `--a=1 "--b=x y"`, "EMPTY": ""}
	tests := []struct {
		in, want []string
	}{
		// systemd's own test-env-util cases for replace_env_argv.
		{[]string{"FOO$FOO"}, []string{"FOO$FOO"}},
		{[]string{"FOO${FOO}$FOO"}, []string{"FOOBAR BAR$FOO"}},
		{[]string{"FOO${FOO}"}, []string{"FOOBAR BAR"}},
		{[]string{"${FOO}"}, []string{"BAR BAR"}},
		{[]string{"$FOO"}, []string{"BAR", "BAR"}},
		{[]string{"${FOO}${BAR}"}, []string{"BAR BARwaldo"}},
		{[]string{"${FOO"}, []string{"${FOO"}},
		// A whole-word $NAME splits with quotes; unset or empty gives no word.
		{[]string{"/bin/x", "$OPTS", "$UNSET", "$EMPTY", "end"}, []string{"/bin/x", "--a=1", "--b=x y", "end"}},
		{[]string{"--x=${UNSET}", "$$HOME", "a$$b", "$"}, []string{"--x=", "$HOME", "a$b", "$"}},
	}
	for _, tt := range tests {
		if got := expandWords(tt.in, vars); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("expandWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     [][2]string
		wantErr  string
	}{
		{name: "etcd.env as rendered",
			in: "ETCD_NAME=master1\nETCD_DATA_DIR=/var/lib/etcd\n" +
				"ETCD_INITIAL_CLUSTER=master1=https://10.99.0.10:2380,master2=https://10.99.0.11:2380\n",
			want: [][2]string{{"ETCD_NAME", "master1"}, {"ETCD_DATA_DIR", "/var/lib/etcd"},
				{"ETCD_INITIAL_CLUSTER", "master1=https://10.99.0.10:2380,master2=https://10.99.0.11:2380"}}},
		{name: "quotes, comments, blanks",
			in:   "# comment\n; also\n\n  A=\"x y\"\nB='lit $x \\n'\nC = spaced value  \nD=\nE=\"q\\\"\\\\\\$\\a\"\n",
			want: [][2]string{{"A", "x y"}, {"B", `lit $x \n`}, {"C", "spaced value"}, {"D", ""}, {"E", `q"\$\a`}}},
		{name: "continuation and multi-line quotes",
			in:   "A=one \\\ntwo\nB=\"l1\nl2\"\nC=x\\ y\n",
			want: [][2]string{{"A", "one two"}, {"B", "l1\nl2"}, {"C", "x y"}}},
		{name: "export and no final newline",
			in:   "export A=1\r\nB=2",
			want: [][2]string{{"A", "1"}, {"B", "2"}}},
		{name: "not an assignment", in: "A=1\nJUNK\n", wantErr: `line 2: "JUNK" is not NAME=VALUE`},
		{name: "bad name", in: "1A=1\n", wantErr: "not a valid variable name"},
		{name: "unterminated", in: "A=\"x\n", wantErr: `line 1: unterminated " quote`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvFile(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRewrite(t *testing.T) {
	r := rewriter{root: "/tmp/r", prefixes: []string{"/etc/", "/opt/bin/", "/var/lib/", "/run/"}}
	tests := []struct{ in, want string }{
		{"/opt/bin/etcd", "/tmp/r/opt/bin/etcd"},
		{"--cert-file=/etc/kubernetes/ssl/a.pem", "--cert-file=/tmp/r/etc/kubernetes/ssl/a.pem"},
		{"--x=/etc/a.pem,/etc/b.pem", "--x=/tmp/r/etc/a.pem,/tmp/r/etc/b.pem"},
		{"--root-dir=/var/lib", "--root-dir=/tmp/r/var/lib"},
		{"PATHS=/opt/bin:/usr/bin", "PATHS=/tmp/r/opt/bin:/usr/bin"},
		{"unix:///run/containerd/containerd.sock", "unix:///tmp/r/run/containerd/containerd.sock"},
		{"mkdir -p /var/lib/etcd", "mkdir -p /tmp/r/var/lib/etcd"},
		// Not paths under a prefix, or not at a boundary.
		{"https://10.99.0.10:2379/etc/x", "https://10.99.0.10:2379/etc/x"},
		{"/usr/bin/env", "/usr/bin/env"},
		{"/etcetera", "/etcetera"},
		{"/var/library", "/var/library"},
		{"x/etc/a", "x/etc/a"},
		{"--bind-address=0.0.0.0:6443", "--bind-address=0.0.0.0:6443"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := r.rewrite(tt.in); got != tt.want {
			t.Errorf("rewrite(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := (rewriter{root: "/", prefixes: []string{"/etc/"}}).rewrite("/etc/x"); got != "/etc/x" {
		t.Errorf("root / rewrote to %q", got)
	}
}

func TestCommand(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"etc/etcd/etcd.env": "ETCD_NAME=master1\nETCD_DATA_DIR=/var/lib/etcd\n" +
			"ETCD_CERT_FILE=/etc/kubernetes/ssl/etcd.pem\nETCD_LISTEN_CLIENT_URLS=https://10.99.0.10:2379\n",
		"etc/etcd/override.env": "GOMAXPROCS=4\n",
		"etc/hostname":          "master1.example.com\n",
	})
	prefixes := []string{"/etc/", "/opt/bin/", "/var/lib/", "/run/"}

	tests := []struct {
		name     string
		unit     Unit
		wantArgv []string
		wantEnv  []string // entries that must be present
		wantErr  string
	}{
		{
			name: "etcd from its env file",
			unit: Unit{Name: "etcd.service", ExecStart: "/opt/bin/etcd",
				Environment:      map[string]string{"GOMAXPROCS": "2"},
				EnvironmentFiles: []string{"/etc/etcd/etcd.env", "-/etc/etcd/missing.env", "/etc/etcd/override.env"}},
			wantArgv: []string{root + "/opt/bin/etcd"},
			wantEnv: []string{
				"ETCD_CERT_FILE=" + root + "/etc/kubernetes/ssl/etcd.pem",
				"ETCD_DATA_DIR=" + root + "/var/lib/etcd",
				"ETCD_LISTEN_CLIENT_URLS=https://10.99.0.10:2379",
				"ETCD_NAME=master1",
				"GOMAXPROCS=4", // the file wins over Environment=
				"PATH=" + defaultPath,
			},
		},
		{
			name: "apiserver flags over continuations, variables and specifiers",
			unit: Unit{Name: "kube-apiserver.service",
				ExecStart: "/opt/bin/kube-apiserver    --etcd-servers=${ETCD_LISTEN_CLIENT_URLS}    " +
					"--client-ca-file=/etc/kubernetes/ssl/ca.pem    --tls-cert-file=/etc/a.pem,/etc/b.pem    $EXTRA " +
					"--hostname-override=%H --log-file=/var/log/%N.log --x=100%%",
				Environment:      map[string]string{"EXTRA": `--v=2 "--token-auth-file=/etc/tokens.csv"`},
				EnvironmentFiles: []string{"/etc/etcd/etcd.env"}},
			wantArgv: []string{root + "/opt/bin/kube-apiserver",
				"--etcd-servers=https://10.99.0.10:2379",
				"--client-ca-file=" + root + "/etc/kubernetes/ssl/ca.pem",
				"--tls-cert-file=" + root + "/etc/a.pem," + root + "/etc/b.pem",
				"--v=2", "--token-auth-file=" + root + "/etc/tokens.csv",
				"--hostname-override=master1.example.com",
				"--log-file=/var/log/kube-apiserver.log",
				"--x=100%",
			},
			wantEnv: []string{"EXTRA=--v=2 \"--token-auth-file=" + root + "/etc/tokens.csv\""},
		},
		{
			name:     "prefix characters and : (no expansion)",
			unit:     Unit{Name: "a.service", ExecStart: "-+:/opt/bin/a $X ${X}", Environment: map[string]string{"X": "1"}},
			wantArgv: []string{root + "/opt/bin/a", "$X", "${X}"},
		},
		{
			name:     "instance specifiers",
			unit:     Unit{Name: "getty@tty1.service", ExecStart: "/opt/bin/agetty %i %p %n %t/x"},
			wantArgv: []string{root + "/opt/bin/agetty", "tty1", "getty", "getty@tty1.service", root + "/run/x"},
		},
		{name: "no ExecStart", unit: Unit{Name: "a.service"}, wantErr: "has no ExecStart"},
		{name: "missing env file", unit: Unit{Name: "a.service", ExecStart: "/bin/a", EnvironmentFiles: []string{"/etc/nope.env"}}, wantErr: "EnvironmentFile=/etc/nope.env"},
		{name: "unknown specifier", unit: Unit{Name: "a.service", ExecStart: "/bin/a %Z"}, wantErr: "unsupported specifier %Z"},
		{name: "@ prefix", unit: Unit{Name: "a.service", ExecStart: "@/bin/a a"}, wantErr: `"@" prefix`},
		{name: "semicolon", unit: Unit{Name: "a.service", ExecStart: "/bin/a ; /bin/b"}, wantErr: `separated by ";"`},
		{name: "bad quoting", unit: Unit{Name: "a.service", ExecStart: `/bin/a "x`}, wantErr: "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv, env, err := tt.unit.Command(root, prefixes)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(argv, tt.wantArgv) {
				t.Errorf("argv\n got %q\nwant %q", argv, tt.wantArgv)
			}
			have := map[string]bool{}
			for _, e := range env {
				have[e] = true
			}
			for _, e := range tt.wantEnv {
				if !have[e] {
					t.Errorf("env lacks %q; env = %q", e, env)
				}
			}
		})
	}
}

func TestStartPreCommands(t *testing.T) {
	u := Unit{Name: "etcd.service", ExecStart: "/opt/bin/etcd",
		ExecStartPre: []string{"/bin/mkdir -p /var/lib/etcd", "-/sbin/modprobe br_netfilter"}}
	got, err := u.StartPreCommands("/r", []string{"/var/lib/"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Exec{
		{Argv: []string{"/bin/mkdir", "-p", "/r/var/lib/etcd"}},
		{Argv: []string{"/sbin/modprobe", "br_netfilter"}, IgnoreFailure: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
