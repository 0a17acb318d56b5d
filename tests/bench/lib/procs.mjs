// What /proc says about a set of processes: CPU time spent and memory held.

import fs from 'node:fs';

// Clock ticks per second of /proc/PID/stat's utime and stime (sysconf
// _SC_CLK_TCK): 100 on every Linux Debian ships.
const TICKS_PER_SECOND = 100;

// CPU seconds (user + system) spent so far by the live processes of pids,
// all their threads included. A process gone meanwhile counts 0, so take a
// delta over processes that live through the measurement.
export function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone
    }
    // The command name (field 2) may hold spaces: count from its ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
  }
  return ticks / TICKS_PER_SECOND;
}

// One process's memory from /proc/PID/smaps_rollup, in MiB: rss, pss
// (shared pages divided among their users) and private (clean + dirty:
// what the process alone holds); null when it is gone.
export function memoryMiB(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch {
    return null;
  }
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return {
    rss: kb('Rss') / 1024,
    pss: kb('Pss') / 1024,
    private: (kb('Private_Clean') + kb('Private_Dirty')) / 1024,
  };
}
