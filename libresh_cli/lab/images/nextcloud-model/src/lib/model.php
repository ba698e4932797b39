<?php
// A MODEL of Nextcloud for libresh's lab, not Nextcloud: the rules libresh relies on, each
// with its upstream source in ../../README.md. Shared by occ, status.php and cron.php, which
// the entrypoint copies onto the /var/www/html volume as the image copies Nextcloud's code.

declare(strict_types=1);

// The server root: the volume, where occ, status.php and config/ are.
define('MODEL_ROOT', dirname(__DIR__));
// The test knob (README.md, "Test knob"): a file in the data directory listing majors whose
// `occ upgrade` fails half-way. Only tests write it.
const FAIL_UPGRADE_KNOB = 'libresh-model-fail-upgrade';

final class ModelFailure extends Exception {
}

/** The code's version, from version.php on the volume (as Util::getVersion reads it). */
function code_version(): array {
	$OC_Version = null;
	require MODEL_ROOT . '/version.php';
	return $OC_Version;
}

function code_version_string(): string {
	return implode('.', code_version());
}

function config_file(): string {
	return MODEL_ROOT . '/config/config.php';
}

/** config.php's $CONFIG, read at every call as Nextcloud reads it (no cache across calls). */
function read_config(): array {
	$file = config_file();
	if (!is_file($file)) {
		return [];
	}
	$CONFIG = [];
	include $file;
	return is_array($CONFIG) ? $CONFIG : [];
}

/** Written whole and renamed into place, 0640, as libresh's db-config hook writes it too. */
function write_config(array $config): void {
	$file = config_file();
	if (!is_dir(dirname($file))) {
		mkdir(dirname($file), 0750, true);
	}
	$partial = $file . '.model';
	$text = "<?php\n\$CONFIG = " . var_export($config, true) . ";\n";
	if (file_put_contents($partial, $text) === false || !chmod($partial, 0640) || !rename($partial, $file)) {
		throw new ModelFailure("cannot write $file");
	}
}

function is_installed(array $config): bool {
	return !empty($config['installed']);
}

function in_maintenance(array $config): bool {
	return !empty($config['maintenance']);
}

/**
 * Util::needUpgrade: the code is newer than config.php's version; code older than it is a
 * downgrade, refused with an exception (status.php then answers 500).
 */
function need_upgrade(array $config): bool {
	if (!is_installed($config)) {
		return false;
	}
	$installed = (string) ($config['version'] ?? '0.0.0');
	$difference = version_compare(code_version_string(), $installed);
	if ($difference < 0) {
		throw new ModelFailure(
			"Downgrading is not supported and is likely to cause unpredictable issues (from $installed to " . code_version_string() . ')'
		);
	}
	return $difference > 0;
}

function major(string $version): int {
	return (int) explode('.', $version)[0];
}

/** dbhost is HOST[:PORT] (AbstractDatabase splits the port off). */
function pdo_for(string $host, string $database, string $user, string $password): PDO {
	$port = '5432';
	if (preg_match('/^(.*):(\d+)$/', $host, $m)) {
		[$host, $port] = [$m[1], $m[2]];
	}
	$dsn = sprintf('pgsql:host=%s;port=%s;dbname=%s;connect_timeout=5', $host, $port, $database);
	return new PDO($dsn, $user, $password, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
}

/** The connection config.php names: what every request and occ command uses. */
function app_database(array $config): PDO {
	return pdo_for(
		(string) ($config['dbhost'] ?? ''),
		(string) ($config['dbname'] ?? ''),
		(string) ($config['dbuser'] ?? ''),
		(string) ($config['dbpassword'] ?? '')
	);
}

function appconfig_get(PDO $db, string $app, string $key): ?string {
	$query = $db->prepare('SELECT configvalue FROM oc_appconfig WHERE appid = ? AND configkey = ?');
	$query->execute([$app, $key]);
	$value = $query->fetchColumn();
	return $value === false ? null : (string) $value;
}

function appconfig_set(PDO $db, string $app, string $key, string $value): void {
	$db->prepare(
		'INSERT INTO oc_appconfig (appid, configkey, configvalue) VALUES (?, ?, ?) '
		. 'ON CONFLICT (appid, configkey) DO UPDATE SET configvalue = EXCLUDED.configvalue'
	)->execute([$app, $key, $value]);
}

function status_values(array $config): array {
	$version = code_version();
	return [
		'installed' => is_installed($config),
		'maintenance' => in_maintenance($config),
		'needsDbUpgrade' => need_upgrade($config),
		'version' => implode('.', $version),
		'versionstring' => implode('.', array_slice($version, 0, 3)),
		'edition' => '',
		'productname' => 'Nextcloud (libresh lab model)',
		'extendedSupport' => false,
	];
}
