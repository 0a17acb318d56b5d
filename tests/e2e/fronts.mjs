// The web servers the end-to-end suite runs behind, each serving the config
// that ships in deploy/ (rendered onto a free loopback port), so what ships
// is what is tested. The harness picks one with RELAY_FRONT (default caddy):
//
//   caddy              deploy/caddy/Caddyfile (environment variables)
//   nginx              deploy/nginx/relay.conf (a server block)
//   apache-proxy-fcgi  deploy/apache/relay-proxy-fcgi.conf (a VirtualHost)
//
// Templates name their variables @RELAY_HOST@, @RELAY_PORT@, @RELAY_SOCKET@
// and @RELAY_WWW@; deploy/run.sh (`make run FRONT=...`) renders them the
// same way. nginx and Apache need a main configuration around the shipped
// file: the few lines a Debian installation's nginx.conf or apache2.conf
// would give it, written into the suite's temp directory (mainConfig).
//
// Those two run their workers as www-data (Apache refuses root), so the
// harness opens the suite's directory and the pool's socket to that group
// (frontUser).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const FRONTS = ['caddy', 'nginx', 'apache-proxy-fcgi'];

// The system user a front's workers run as, or null (they run as us).
export const frontUser = (front) => (front === 'caddy' ? null : 'www-data');

// The binary a front needs, for the harness's prerequisites check.
export const frontBinary = (front) => ({ caddy: 'caddy', nginx: 'nginx', 'apache-proxy-fcgi': 'apache2' })[front];

// deploy/FILE with every @NAME@ replaced by vars[NAME]; an unknown name is
// an error, so a template and its renderers cannot drift apart.
export function renderTemplate(file, vars) {
  const text = fs.readFileSync(path.join(REPO, file), 'utf8');
  return text.replace(/@([A-Z_]+)@/g, (all, name) => {
    if (!(name in vars)) throw new Error(`${file}: no value for ${all}`);
    return vars[name];
  });
}

const APACHE_MODULES = [
  ['mpm_event_module', 'mod_mpm_event.so'],
  ['authz_core_module', 'mod_authz_core.so'],
  ['mime_module', 'mod_mime.so'],
  ['dir_module', 'mod_dir.so'],
  ['alias_module', 'mod_alias.so'],
  ['proxy_module', 'mod_proxy.so'],
  ['proxy_fcgi_module', 'mod_proxy_fcgi.so'],
];

// Writes the front's configuration into dir and returns how to start it in
// the foreground: {cmd, args, env}. vars: the template variables.
export function frontCommand(front, dir, vars) {
  const site = (file) => {
    const out = path.join(dir, path.basename(file));
    fs.writeFileSync(out, renderTemplate(file, vars));
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
          // Keep Caddy's own state out of the user's home.
          HOME: dir,
          XDG_DATA_HOME: path.join(dir, 'xdg-data'),
          XDG_CONFIG_HOME: path.join(dir, 'xdg-config'),
        },
      };
    case 'nginx': {
      const server = site('deploy/nginx/relay.conf');
      const temp = path.join(dir, 'nginx-temp');
      fs.mkdirSync(temp, { recursive: true });
      const main = path.join(dir, 'nginx.conf');
      fs.writeFileSync(main, [
        'user www-data;',
        'worker_processes 2;',
        `pid ${dir}/nginx.pid;`,
        'error_log stderr warn;',
        'events { worker_connections 1024; }',
        'http {',
        '    include /etc/nginx/mime.types;',
        '    access_log off;',
        `    client_body_temp_path ${temp}/body;`,
        `    fastcgi_temp_path ${temp}/fastcgi;`,
        `    proxy_temp_path ${temp}/proxy;`,
        `    uwsgi_temp_path ${temp}/uwsgi;`,
        `    scgi_temp_path ${temp}/scgi;`,
        `    include ${server};`,
        '}',
        '',
      ].join('\n'));
      return { cmd: 'nginx', args: ['-c', main, '-p', dir, '-g', 'daemon off;'], env: {} };
    }
    case 'apache-proxy-fcgi': {
      const vhost = site('deploy/apache/relay-proxy-fcgi.conf');
      const main = path.join(dir, 'apache2.conf');
      fs.writeFileSync(main, [
        `ServerRoot ${dir}`,
        `DefaultRuntimeDir ${dir}`,
        `PidFile ${dir}/apache2.pid`,
        'ServerName 127.0.0.1',
        ...APACHE_MODULES.map(([name, so]) => `LoadModule ${name} /usr/lib/apache2/modules/${so}`),
        'User www-data',
        'Group www-data',
        'ErrorLog /dev/stderr',
        'LogLevel warn',
        'TypesConfig /etc/mime.types',
        // Enough workers for the suite's concurrent streams.
        'ThreadsPerChild 64',
        'MaxRequestWorkers 256',
        'ServerLimit 4',
        `Listen ${vars.RELAY_HOST}:${vars.RELAY_PORT}`,
        `Include ${vhost}`,
        '',
      ].join('\n'));
      return { cmd: 'apache2', args: ['-f', main, '-DFOREGROUND'], env: {} };
    }
    default:
      throw new Error(`unknown front ${front} (RELAY_FRONT: ${FRONTS.join(', ')})`);
  }
}
