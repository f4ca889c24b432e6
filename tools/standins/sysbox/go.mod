module dockyard.local/standins/sysbox

go 1.21
