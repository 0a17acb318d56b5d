// The web servers the end-to-end suite runs behind, each serving the config
// that ships in deploy/ (rendered onto a free loopback port), so what ships
// is what is tested. The harness picks one with RELAY_FRONT (default caddy):
//
//   caddy              deploy/caddy/Caddyfile (environment variables)
//   nginx              deploy/nginx/relay.conf (a server block)
//   apache-proxy-fcgi  deploy/apache/relay-proxy-fcgi.conf (a VirtualHost)
//   apache-fcgid       deploy/apache/relay-fcgid.conf (a VirtualHost): Apache
//                      starts relay.fcgi itself through mod_fcgid, so the
//                      harness starts no pool (process model 'fcgid')
//
// Templates name their variables @RELAY_HOST@, @RELAY_PORT@, @RELAY_SOCKET@,
// @RELAY_WWW@ and @RELAY_BODY_TIMEOUT@ (the front's own limit on a request
// body, in seconds: [fcgi] body_timeout + 5, see bodyTimeout) (@RELAY_FCGI@
// and @RELAY_INI@, the binary and its config, for mod_fcgid; and
// @RELAY_RUNDIR@, @RELAY_SITE@ for the foreground configs); deploy/run.sh
// (`make run FRONT=...`) renders them the same way. Caddy reads the same
// values from its environment (RELAY_HOST, ...).
// nginx and Apache run from the shipped *-foreground.conf around the site,
// which stands in for an installation's nginx.conf or apache2.conf.
//
// Those two run their workers as www-data (Apache refuses root), so the
// harness opens the suite's directory and the pool's socket to that group
// (frontUser). Under mod_fcgid the relay.fcgi processes Apache starts run as
// www-data too, so the store, its key file and relay.ini belong to that user.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// `make test` runs the suite behind each (tests/run.sh).
export const FRONTS = ['caddy', 'nginx', 'apache-proxy-fcgi', 'apache-fcgid'];

// The system user a front's workers run as, or null (they run as us).
export const frontUser = (front) => (front === 'caddy' ? null : 'www-data');

// The binary a front needs, for the harness's prerequisites check.
export const frontBinary = (front) =>
  ({ caddy: 'caddy', nginx: 'nginx', 'apache-proxy-fcgi': 'apache2', 'apache-fcgid': 'apache2' })[front];

// The process model a front imposes, or null (the harness starts Relay's
// pool, or relay.fcgi under spawn-fcgi): 'fcgid' when the front starts and
// stops relay.fcgi processes itself.
export const frontProcessModel = (front) => (front === 'apache-fcgid' ? 'fcgid' : null);

// The front's limit on a request body (RELAY_BODY_TIMEOUT), from Relay's
// [fcgi] body_timeout: a little longer, so that Relay frees its thread (and
// counts a 408) before the front ends the client's request.
export const bodyTimeout = (relayBodyTimeout) => String(Number(relayBodyTimeout) + 5);

// deploy/FILE with every @NAME@ replaced by vars[NAME]; an unknown name is
// an error, so a template and its renderers cannot drift apart.
export function renderTemplate(file, vars) {
  const text = fs.readFileSync(path.join(REPO, file), 'utf8');
  return text.replace(/@([A-Z_]+)@/g, (all, name) => {
    if (!(name in vars)) throw new Error(`${file}: no value for ${all}`);
    return vars[name];
  });
}

// Writes the front's configuration into dir and returns how to start it in
// the foreground: {cmd, args, env}. vars: the template variables.
export function frontCommand(front, dir, vars) {
  // Renders deploy/FILE into dir; returns the rendered file's path.
  const render = (file, more = {}) => {
    const out = path.join(dir, path.basename(file));
    fs.writeFileSync(out, renderTemplate(file, { ...vars, RELAY_RUNDIR: dir, ...more }));
    return out;
  };
  switch (front) {
    case 'caddy':
      return {
        cmd: 'caddy',
        args: ['run', '--config', path.join(REPO, 'deploy', 'caddy', 'Caddyfile'), '--adapter', 'caddyfile'],
        env: {
          RELAY_HOST: vars.RELAY_HOST,
          RELAY_PORT: vars.RELAY_PORT,
          RELAY_SOCKET: vars.RELAY_SOCKET,
          RELAY_WWW: vars.RELAY_WWW,
          RELAY_BODY_TIMEOUT: vars.RELAY_BODY_TIMEOUT,
          // Keep Caddy's own state out of the user's home.
          HOME: dir,
          XDG_DATA_HOME: path.join(dir, 'xdg-data'),
          XDG_CONFIG_HOME: path.join(dir, 'xdg-config'),
        },
      };
    case 'nginx': {
      const main = render('deploy/nginx/nginx-foreground.conf', { RELAY_SITE: render('deploy/nginx/relay.conf') });
      return { cmd: 'nginx', args: ['-c', main, '-p', dir, '-g', 'daemon off;'], env: {} };
    }
    case 'apache-proxy-fcgi': {
      const main = render('deploy/apache/apache2-foreground.conf', { RELAY_SITE: render('deploy/apache/relay-proxy-fcgi.conf') });
      return { cmd: 'apache2', args: ['-f', main, '-DFOREGROUND'], env: {} };
    }
    case 'apache-fcgid': {
      const main = render('deploy/apache/apache2-foreground.conf', { RELAY_SITE: render('deploy/apache/relay-fcgid.conf') });
      return { cmd: 'apache2', args: ['-f', main, '-DFOREGROUND'], env: {} };
    }
    default:
      throw new Error(`unknown front ${front} (RELAY_FRONT: ${FRONTS.join(', ')})`);
  }
}
