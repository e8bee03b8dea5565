#!/usr/bin/perl
# A persistent Mail::DKIM verifier for the differential fuzzer: one Perl start-up for any
# number of messages.
#
# Usage: mail_dkim_worker.pl KEYS-FILE
#
# KEYS-FILE holds one "NAME RECORD" pair a line (NAME the key's DNS owner name, RECORD its TXT
# data), as verify_mail_dkim.pl --keys-file takes it; public keys are served from it by a
# stand-in for Net::DNS::Resolver installed with Mail::DKIM::DNS::resolver(), the documented
# hook, so no verification waits on DNS. Any other name is NXDOMAIN.
#
# Requests on stdin: a decimal byte count, LF, then that many bytes of message, fed to
# Mail::DKIM::Verifier exactly as given (the fuzzer sends what an MTA would deliver).
# One reply line per request on stdout, flushed:
#   RESULT <TAB> DETAIL [<TAB> RESULT <TAB> DETAIL ...]
# one pair per DKIM-Signature from the top; "none" and the detail when there is none, "error"
# and the message when Mail::DKIM died.
use strict;
use warnings;

use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS;

package KeyResolver {
    use Net::DNS;

    sub new {
        my ( $class, %records ) = @_;
        return bless { records => {%records} }, $class;
    }

    sub send {
        my ( $self, $name, $type ) = @_;
        my $packet = Net::DNS::Packet->new( $name, $type );
        $packet->header->qr(1);
        $packet->header->aa(1);
        my $record = $self->{records}{ lc $name };
        if ( uc($type) eq 'TXT' && defined $record ) {
            $packet->header->rcode('NOERROR');
            $packet->push( answer => Net::DNS::RR->new(
                owner => $name, type => 'TXT', ttl => 300,
                txtdata => [ unpack '(a255)*', $record ] ) );
        }
        else {
            $packet->header->rcode('NXDOMAIN');
        }
        return $packet;
    }

    sub errorstring { return 'NOERROR' }
}

package main;

sub clean {
    my ($text) = @_;
    $text = '' unless defined $text;
    $text =~ s/[\t\r\n]+/ /g;
    return $text;
}

my $keys_file = shift @ARGV or die "usage: $0 KEYS-FILE\n";
my %records;
open my $kf, '<', $keys_file or die "cannot open $keys_file: $!\n";
while ( my $line = <$kf> ) {
    $line =~ s/\r?\n\z//;
    next if $line =~ /^\s*(?:#|\z)/;
    my ( $name, $record ) = split /\s+/, $line, 2;
    $records{ lc $name } = $record;
}
close $kf;
Mail::DKIM::DNS::resolver( KeyResolver->new(%records) );

binmode STDIN;
binmode STDOUT;
$| = 1;
while ( defined( my $count = <STDIN> ) ) {
    chomp $count;
    die "bad request length '$count'\n" unless $count =~ /\A\d+\z/;
    my $data = '';
    while ( length($data) < $count ) {
        my $n = read( STDIN, $data, $count - length($data), length($data) );
        die "short request\n" unless $n;
    }
    my @out;
    my $ok = eval {
        my $verifier = Mail::DKIM::Verifier->new();
        $verifier->PRINT($data);
        $verifier->CLOSE();
        my @signatures = grep { $_->isa('Mail::DKIM::Signature') } $verifier->signatures;
        @out = ( 'none', clean( $verifier->result_detail ) ) unless @signatures;
        push @out, clean( $_->result ), clean( $_->result_detail ) for @signatures;
        1;
    };
    @out = ( 'error', clean($@) ) unless $ok;
    print join( "\t", @out ), "\n";
}
