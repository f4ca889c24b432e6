// Command pulumi-language-python is a small Pulumi language host for Python programs.
//
// The upstream host (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python)
// cannot be fetched through the Go module proxy reachable here, so this one covers
// what `pulumi up/preview/destroy/refresh` need: it runs the program through the
// SDK's own `pulumi-language-python-exec` script (installed beside this binary) with
// the project's virtualenv. Dependency installation, `pulumi about` and `pulumi new`
// helpers are left unimplemented; the engine tolerates that.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

func main() {
	if err := serve(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	// The engine passes its address as the last positional argument (flags before it
	// are not needed by this host); with Handshake it arrives again over gRPC.
	engineAddress := ""
	if len(args) > 0 {
		engineAddress = args[len(args)-1]
	}
	execScript, err := execScriptPath()
	if err != nil {
		return err
	}
	host := &languageHost{engineAddress: engineAddress, execScript: execScript}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("could not start the gRPC server: %w", err)
	}
	// The engine reads the port from our first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	return <-handle.Done
}
