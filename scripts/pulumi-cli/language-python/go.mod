// Minimal Python language host for the Pulumi CLI, built by scripts/pulumi-cli.sh
// because the upstream module is not served by the Go module proxy here.
module dockyard.local/pulumi-language-python

go 1.26
