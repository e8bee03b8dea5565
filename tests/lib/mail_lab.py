"""Shared by the Postfix end-to-end test (tests/e2e) and the performance lab (tests/bench):
loopback ports, waiting, and a private Postfix instance's files and processes.

A private Postfix here has its own main.cf and master.cf in a folder of its own, no chroot (it
would need copies of system files), SMTP on a loopback port, and relays everything to a sink.
Its processes are found by MAIL_CONFIG in their environment, so several instances and the
system's own Postfix never get in each other's way.
"""
import os
import signal
import socket
import subprocess
import time


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_for(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({e})\n"


# The services of master.cf, with smtpd on 127.0.0.1:{port} instead of port 25.
_SERVICES = [
    "pickup unix n - n 60 1 pickup",
    "cleanup unix n - n - 0 cleanup",
    "qmgr unix n - n 300 1 qmgr",
    "rewrite unix - - n - - trivial-rewrite",
    "bounce unix - - n - 0 bounce",
    "defer unix - - n - 0 bounce",
    "trace unix - - n - 0 bounce",
    "verify unix - - n - 1 verify",
    "flush unix n - n 1000? 0 flush",
    "proxymap unix - - n - - proxymap",
    "proxywrite unix - - n - 1 proxymap",
    "smtp unix - - n - - smtp",
    "relay unix - - n - - smtp",
    "showq unix n - n - - showq",
    "error unix - - n - - error",
    "retry unix - - n - - error",
    "discard unix - - n - - discard",
    "anvil unix - - n - 1 anvil",
    "scache unix - - n - 1 scache",
    "postlog unix-dgram n - n - 1 postlogd",
]


def write_postfix_config(conf, queue, data, *, domain, smtp_port, sink_port, milters,
                         default_action, log_file, log_prefix, extra=""):
    """Writes main.cf and master.cf into `conf`. `milters` is smtpd_milters' value ("" for
    none); `extra` is appended to main.cf as it is."""
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.{domain}
mydomain = {domain}
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtpd_milters = {milters}
non_smtpd_milters =
milter_default_action = {default_action}
maillog_file = {log_file}
maillog_file_prefixes = {log_prefix}
smtputf8_enable = no
smtpd_peername_lookup = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
disable_dns_lookups = yes
smtp_host_lookup = native
append_dot_mydomain = no
""" + extra)
    with open(os.path.join(conf, "master.cf"), "w") as f:
        f.write("\n".join([f"127.0.0.1:{smtp_port} inet n - n - - smtpd"] + _SERVICES) + "\n")


def postfix_pids(conf):
    """Processes of the instance whose configuration folder is `conf`."""
    pids = []
    want = f"MAIL_CONFIG={conf}".encode()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    pids.append(int(p))
        except OSError:
            pass
    return pids


def stop_postfix(conf):
    """`postfix stop`, then SIGKILL whatever of the instance is still there after 10 s."""
    try:
        subprocess.run(["postfix", "-c", conf, "stop"], capture_output=True,
                       env=dict(os.environ, MAIL_CONFIG=conf), timeout=30)
    except subprocess.TimeoutExpired:
        pass
    wait_for(lambda: not postfix_pids(conf), 10, 0.2)
    for pid in postfix_pids(conf):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
