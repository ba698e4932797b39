<?php
// status.php of libresh's Nextcloud MODEL: installed, maintenance, needsDbUpgrade and the
// version as JSON, 200 in every state; 500 when an exception is thrown (a downgrade, or an
// installed instance whose database its own role cannot read). Sources: ../README.md.

declare(strict_types=1);

require __DIR__ . '/lib/model.php';

try {
	$config = read_config();
	$values = status_values($config);
	// The model's stand-in for base.php loading the apps' config from the database at every
	// request: an installed, migrated instance reads oc_appconfig with config.php's role.
	if ($values['installed'] && !$values['maintenance'] && !$values['needsDbUpgrade']) {
		appconfig_get(app_database($config), 'core', 'installedversion');
	}
	header('Content-Type: application/json');
	echo json_encode($values);
} catch (Throwable $error) {
	http_response_code(500);
	error_log('status.php: ' . $error->getMessage());
}
