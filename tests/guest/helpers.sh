# Helpers for guest test scripts (sourced by /init before the test script).
#
# Result lines, parsed by the Rust harness (tests/src/results.rs):
#   SRIOV-EMU-RESULT name=<name> status=<pass|fail> detail=<text to end of line>
# <name> has no spaces (they are replaced by '_'); detail is one line.

# result NAME pass|fail [DETAIL...]
result() {
    _name=$(printf '%s' "$1" | tr ' \t\r\n' '____')
    _status=$2
    shift 2
    _detail=$(printf '%s' "$*" | tr '\t\r\n' '   ' | cut -c1-400)
    echo "SRIOV-EMU-RESULT name=$_name status=$_status detail=$_detail"
}

# check NAME CMD [ARGS...]: pass if the command exits 0 (detail: the last line
# of its output), fail otherwise (detail: exit status and the last lines).
# Returns the command's status.
check() {
    _cname=$1
    shift
    _out=$("$@" 2>&1)
    _rc=$?
    if [ "$_rc" -eq 0 ]; then
        result "$_cname" pass "$(printf '%s\n' "$_out" | tail -n 1)"
    else
        result "$_cname" fail "rc=$_rc: $(printf '%s\n' "$_out" | tail -n 3)"
    fi
    return "$_rc"
}

# check_fails NAME CMD [ARGS...]: pass if the command exits non-zero.
check_fails() {
    _cname=$1
    shift
    _out=$("$@" 2>&1)
    _rc=$?
    if [ "$_rc" -ne 0 ]; then
        result "$_cname" pass "rc=$_rc: $(printf '%s\n' "$_out" | tail -n 1)"
        return 0
    fi
    result "$_cname" fail "unexpectedly succeeded: $(printf '%s\n' "$_out" | tail -n 1)"
    return 1
}

# check_eq NAME EXPECTED CMD [ARGS...]: pass if the command's output (trimmed)
# equals EXPECTED.
check_eq() {
    _cname=$1
    _want=$2
    shift 2
    _got=$("$@" 2>&1 | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
    if [ "$_got" = "$_want" ]; then
        result "$_cname" pass "$_got"
        return 0
    fi
    result "$_cname" fail "expected '$_want', got '$_got'"
    return 1
}

# value NAME CMD [ARGS...]: report the command's output as a passing result
# (for numbers the host side wants to look at, e.g. iperf3 throughput).
value() {
    _cname=$1
    shift
    _out=$("$@" 2>&1)
    result "$_cname" pass "$_out"
}

# wait_for SECONDS CMD [ARGS...]: retry CMD every 0.2 s until it succeeds or
# SECONDS have passed. Returns 0 once it succeeded, 1 on timeout.
wait_for() {
    _deadline=$(( $(cut -d. -f1 /proc/uptime) + $1 ))
    shift
    while :; do
        "$@" > /dev/null 2>&1 && return 0
        [ "$(cut -d. -f1 /proc/uptime)" -ge "$_deadline" ] && return 1
        usleep 200000
    done
}

# The Debian busybox shell runs its own applets before searching PATH, so the
# real iproute2 tools are reached through these functions (a `sh -c` child
# does not inherit them: call /usr/sbin/ip there).
ip() { /usr/sbin/ip "$@"; }
tc() { /usr/sbin/tc "$@"; }
