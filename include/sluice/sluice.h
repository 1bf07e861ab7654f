/*
 * sluice/sluice.h - the umbrella header of libsluice. Include this one.
 */
#ifndef SLUICE_H
#define SLUICE_H

#define SLUICE_VERSION_MAJOR 0
#define SLUICE_VERSION_MINOR 1
#define SLUICE_VERSION_PATCH 0
#define SLUICE_VERSION "0.1.0"

#include "error.h"
#include "log.h"
#include "msg.h"
#include "pubsub.h"
#include "transport.h"
#include "router.h" /* includes ctx.h */
#include "store.h"
#include "sync.h"
#include "auth.h"
#include "config.h"

#endif
