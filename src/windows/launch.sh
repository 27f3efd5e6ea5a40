#!/bin/sh
# Runs one Windows sample under Wine inside the sandbox; the monitor starts it as the first
# process. Usage: wine-launch <gui|console> <program> [arguments...]
#
# wineserver is started here, not by the sample, so it is never the sample's child. Its debug
# trace goes to fd 4, a pipe the supervisor drains into the run directory: the sample never
# holds that fd. At the end (the sample and its children gone, or SIGTERM from the supervisor
# at the timeout) every other process is stopped and wineserver exits by itself one second
# after the last Windows process (-p1) and saves the registry. With -p0 it would exit in the
# moment between the bootstrap process and the sample, and the sample would start a second
# wineserver of its own, untraced. Only shell built-ins run after the start, so the stop adds
# no processes to the report.

display=$1
shift

stop_others() {
	for dir in /proc/[0-9]*; do
		pid=${dir#/proc/}
		case $pid in
		1 | "$$" | "$server") ;;
		*) kill -KILL "$pid" 2>/dev/null ;;
		esac
	done
}

server_ready() {
	for socket in /tmp/wine-*/server-*/socket /tmp/.wine-0/server-*/socket; do
		[ -S "$socket" ] && return 0
	done
	return 1
}

/usr/lib/wine/wineserver64 -f -d2 -p1 </dev/null >/dev/null 2>&4 4>&- &
server=$!
exec 4>&-
# Until its socket exists a Windows process would start a second wineserver of its own.
# Built-ins only (dash has no sleep): a short busy wait, bounded.
tries=0
until server_ready || [ "$tries" -ge 200000 ]; do
	tries=$((tries + 1))
done
trap 'stop_others' TERM

if [ "$display" = gui ]; then
	# Xvfb writes the display number to fd 1 once it accepts clients.
	(Xvfb :0 -nolisten tcp -screen 0 1280x800x24 -displayfd 1 2>/dev/null </dev/null &) |
		read -r _
	export DISPLAY=:0
fi

# The session's first Windows process starts wineboot, which starts services.exe and the
# other system processes. Started here, they are not the sample's children.
/usr/lib/wine/wine64 'C:\windows\system32\hostname.exe' </dev/null >/dev/null 2>&1

# The sample alone runs with +relay: with the prefix's RelayInclude, Wine prints on its stderr
# every export it looks up by name (wine_get_version and the like). Its children inherit it.
WINEDEBUG="${WINEDEBUG:+$WINEDEBUG,}+relay" "$@" &
sample=$!
wait "$sample"
code=$?
while kill -0 "$server" 2>/dev/null; do
	wait "$server"
done
stop_others
exit "$code"
