// STAND-IN for sysbox-ce's three binaries, for offline tests only.
//
// It is NOT sysbox: no user-namespace isolation, no sysbox-fs FUSE file
// system, no ID-mapped mounts. It only behaves like sysbox where a host
// installer and its systemd units can observe it:
//
//   - sysbox-mgr / sysbox-fs accept the real flags, create their hardcoded
//     sockets and pid files under /run/sysbox, answer connections there,
//     report READY=1 over $NOTIFY_SOCKET and run until SIGTERM, then remove
//     their sockets and pid files.
//   - sysbox-runc execs runc (beside it, else on PATH) with all arguments;
//     `--version` prints a version block marked STAND-IN.
//
// The binary picks its role from the name it is run under.
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Set with -ldflags "-X main.version=...".
var version = "0.6.7"

const runDir = "/run/sysbox"

// Flags of the real daemons that take a value; any other --flag is boolean.
var valueFlags = map[string]bool{
	"log": true, "log-level": true, "log-format": true, "data-root": true,
	"mountpoint": true, "subid-range-size": true, "seccomp-fd-release": true,
	"cpuprofile": true, "memprofile": true,
}

type daemon struct {
	role        string
	sockets     []string
	pidFile     string
	dirFlag     string
	defaultDir  string
	description string
}

var daemons = map[string]daemon{
	"sysbox-mgr": {
		role:        "sysbox-mgr",
		sockets:     []string{runDir + "/sysmgr.sock"},
		pidFile:     runDir + "/sysmgr.pid",
		dirFlag:     "data-root",
		defaultDir:  "/var/lib/sysbox",
		description: "sysbox-mgr STAND-IN",
	},
	"sysbox-fs": {
		role:        "sysbox-fs",
		sockets:     []string{runDir + "/sysfs.sock", runDir + "/sysfs-seccomp.sock"},
		pidFile:     runDir + "/sysfs.pid",
		dirFlag:     "mountpoint",
		defaultDir:  "/var/lib/sysboxfs",
		description: "sysbox-fs STAND-IN",
	},
}

func main() {
	name := filepath.Base(os.Args[0])
	switch {
	case strings.HasPrefix(name, "sysbox-runc"):
		runcMain(os.Args[1:])
	case strings.HasPrefix(name, "sysbox-mgr"):
		daemonMain(daemons["sysbox-mgr"], os.Args[1:])
	case strings.HasPrefix(name, "sysbox-fs"):
		daemonMain(daemons["sysbox-fs"], os.Args[1:])
	default:
		fmt.Fprintf(os.Stderr, "sysbox STAND-IN: unknown role %q (run as sysbox-mgr, sysbox-fs or sysbox-runc)\n", name)
		os.Exit(2)
	}
}

func versionBlock(role string) string {
	return fmt.Sprintf("%s\n\tedition: \tSTAND-IN (not sysbox; for offline tests)\n"+
		"\tversion: \t%s\n\tcommit: \tstandin\n\tbuilt at: \tn/a\n\tbuilt by: \tdockyard tools/standins\n",
		role, version)
}

func runcMain(args []string) {
	for _, arg := range args {
		if arg == "--version" || arg == "-v" || arg == "version" {
			fmt.Print(versionBlock("sysbox-runc"))
			fmt.Print("\toci-specs: \t1.0.2\n")
			return
		}
		if !strings.HasPrefix(arg, "-") {
			break // a subcommand: hand everything to runc
		}
	}
	runc := findRunc()
	if runc == "" {
		fmt.Fprintln(os.Stderr, "sysbox-runc STAND-IN: runc not found beside this binary or on PATH")
		os.Exit(127)
	}
	argv := append([]string{"runc"}, args...)
	if err := syscall.Exec(runc, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "sysbox-runc STAND-IN: exec %s: %v\n", runc, err)
		os.Exit(126)
	}
}

func findRunc() string {
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "runc")
		if info, err := os.Stat(beside); err == nil && !info.IsDir() {
			return beside
		}
	}
	if path, err := exec.LookPath("runc"); err == nil {
		return path
	}
	return ""
}

// parseFlags accepts --flag=value, --flag value (for value flags) and
// boolean --flag, the way the real urfave/cli daemons do.
func parseFlags(args []string) (map[string]string, error) {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") {
			return nil, fmt.Errorf("unexpected argument %q", arg)
		}
		key := strings.TrimLeft(arg, "-")
		if k, v, ok := strings.Cut(key, "="); ok {
			flags[k] = v
			continue
		}
		if valueFlags[key] {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag --%s needs a value", key)
			}
			flags[key] = args[i+1]
			i++
			continue
		}
		flags[key] = "true"
	}
	return flags, nil
}

type logger struct{ out *os.File }

func (l logger) printf(format string, args ...any) {
	stamp := time.Now().UTC().Format(time.RFC3339)
	fmt.Fprintf(l.out, "time=%q level=info msg=%q\n", stamp, fmt.Sprintf(format, args...))
}

func daemonMain(d daemon, args []string) {
	flags, err := parseFlags(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", d.description, err)
		os.Exit(2)
	}
	if _, ok := flags["version"]; ok {
		fmt.Print(versionBlock(d.role))
		return
	}
	if _, ok := flags["help"]; ok {
		fmt.Printf("%s: accepts --log, --log-level, --%s and the other flags of the real daemon\n",
			d.description, d.dirFlag)
		return
	}
	log := logger{out: os.Stderr}
	if path := flags["log"]; path != "" {
		file, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: open log: %v\n", d.description, err)
			os.Exit(1)
		}
		log = logger{out: file}
	}
	dir := flags[d.dirFlag]
	if dir == "" {
		dir = d.defaultDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(log, d, "create %s: %v", dir, err)
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		fail(log, d, "create %s: %v", runDir, err)
	}
	var listeners []net.Listener
	for _, path := range d.sockets {
		_ = os.Remove(path) // stale socket from an unclean stop
		listener, err := net.Listen("unix", path)
		if err != nil {
			fail(log, d, "listen on %s: %v", path, err)
		}
		listeners = append(listeners, listener)
		go serve(listener, d)
	}
	if err := os.WriteFile(d.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fail(log, d, "write %s: %v", d.pidFile, err)
	}
	log.printf("%s %s ready (log-level %s, %s %s)", d.description, version,
		flags["log-level"], d.dirFlag, dir)
	notify(log, fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=%s ready", os.Getpid(), d.description))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	sig := <-stop
	log.printf("%s stopping on %v", d.description, sig)
	notify(log, "STOPPING=1")
	for i, listener := range listeners {
		_ = listener.Close()
		_ = os.Remove(d.sockets[i])
	}
	_ = os.Remove(d.pidFile)
}

// serve answers every connection with one line. It first reads what the
// client sends (briefly), so a client that writes a request (curl) is not
// reset mid-send.
func serve(listener net.Listener, d daemon) {
	for {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		go func(conn net.Conn) {
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			buf := make([]byte, 4096)
			for {
				n, err := conn.Read(buf)
				if err != nil || strings.Contains(string(buf[:n]), "\r\n\r\n") {
					break
				}
			}
			_, _ = fmt.Fprintf(conn, "%s %s\n", d.description, version)
		}(conn)
	}
}

func notify(log logger, state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // abstract socket namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.printf("sd_notify: %v", err)
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		log.printf("sd_notify: %v", err)
	}
}

func fail(log logger, d daemon, format string, args ...any) {
	log.printf("%s: "+format, append([]any{d.description}, args...)...)
	fmt.Fprintf(os.Stderr, "%s: "+format+"\n", append([]any{d.description}, args...)...)
	os.Exit(1)
}
